"""cocotb bench of one core (runs inside the HDL simulator; started by :func:`spikeforge.rtl.cosim.cosim_core`).

Driver, monitor and scoreboard over transactions the simulator computed (a JSON file named by
``$SPIKEFORGE_COSIM_IN``). Per step ``t``:

* phase I: ``start`` at cycle 0; the driver writes each flit into the event FIFO in the cycle
  before the simulator says it can be popped (so the core sees it at the same cycle) and checks
  the FIFO had room; the monitor checks ``i_done`` is low one cycle before and high at the cycle
  the simulator's core is done (end of its last event + ``pipeline_cycles``) and reads
  ``last_end``;
* phase F: ``fire`` at cycle 0; ``f_done`` low at ``F - 1`` and high at ``F`` (the simulator's
  ``ceil(n/lanes)`` or 0);
* barrier: the scoreboard reads every membrane and, where the piece fired, the history row of
  ``t``, and the busy-cycle counter, and compares them with the simulator's, exactly.

The clock only advances between transactions (``ClockCycles``), never one Python callback per
cycle. Results (counts and the mismatches, first first) go to ``$SPIKEFORGE_COSIM_OUT``.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

__all__ = ["core_bench"]


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class _Bench:
    def __init__(self, dut, spec: dict) -> None:
        self.dut = dut
        self.spec = spec
        self.cycles = 0
        self.mismatches: list[dict] = []
        self.compared = {
            "events": 0,
            "cycle_checks": 0,
            "membranes": 0,
            "spikes": 0,
            "busy": 0,
            "steps": 0,
            "packets": 0,
        }

    def mismatch(self, step: int, what: str, expected, got, neuron: int | None = None) -> None:
        self.mismatches.append(
            {
                "step": step,
                "core": self.spec["core"],
                "piece": self.spec["piece"],
                "what": what,
                "neuron": neuron,
                "expected": expected,
                "got": got,
            }
        )

    async def edges(self, k: int) -> None:
        """Advance ``k`` cycles: afterwards the outputs read are those of the last cycle advanced over."""
        if k > 0:
            await ClockCycles(self.dut.clk, k)
            self.cycles += k

    async def phase_i(self, st: dict) -> None:
        dut, t = self.dut, st["t"]
        dut.step.value = t
        dut.start.value = 1  # cycle 0
        actions: dict[int, list] = {0: []}  # cycle 0 always advances alone: `start` is high for it only
        for ev in st["events"]:  # written in the cycle before the core may pop it
            actions.setdefault(ev[0] - 1, []).append(("push", ev))
        for fl in st["out"]:  # the router took the encoder's flit in this cycle
            actions.setdefault(fl[0], []).append(("take", fl))
        end = st["core_end"]  # i_done low in the cycle before, high in it
        if end >= 0:
            actions.setdefault(end - 1, []).append(("done", 0))
            actions.setdefault(end, []).append(("done", 1))
        else:
            actions.setdefault(0, []).append(("done", 1))
        last = max(actions) + 1  # then nothing may be left to send
        actions.setdefault(last, []).append(("quiet", None))
        c = 0  # the cycle the inputs written now apply to; outputs read after the next edge are its
        for at in sorted(actions):
            if at < c:
                self.mismatch(t, "bench order", f"cycle {at}", f"bench already at cycle {c}")
                continue
            if at > c:
                await self.edges(at - c)
                dut.start.value = 0
                c = at
            for kind, item in actions[at]:
                if kind == "push":
                    dut.events__payload.value = self.pack_flit(*item[1:])
                    dut.events__valid.value = 1
                elif kind == "take":
                    dut.flits__ready.value = 1
            await self.edges(1)
            dut.start.value = 0
            dut.events__valid.value = 0
            dut.flits__ready.value = 0
            c = at + 1
            for kind, item in actions[at]:
                if kind == "push":
                    self.compared["events"] += 1
                    if not int(dut.events__ready.value):
                        self.mismatch(t, f"event FIFO full at cycle {at}", 1, 0)
                elif kind == "take":
                    self.compared["packets"] += 1
                    got = self.unpack_out(dut) if int(dut.flits__valid.value) else None
                    want = list(item[1:])
                    if got != want:
                        self.mismatch(t, f"output packet at cycle {at} (type, slot, index, payload, x, y)", want, got)
                elif kind == "done":
                    await self.check_done(t, "i_done", at, item)
                    if item and end >= 0:
                        got = int(dut.last_end.value) + self.spec["pipeline"]
                        self.compared["cycle_checks"] += 1
                        if got != end:
                            self.mismatch(t, "phase I end cycle (last_end + pipeline_cycles)", end, got)
                else:
                    self.compared["cycle_checks"] += 1
                    if int(dut.flits__valid.value):  # every packet the simulator sent has been taken
                        self.mismatch(t, "output packet the simulator did not send", None, self.unpack_out(dut))

    def unpack_out(self, dut) -> list[int]:
        word = int(dut.flits__payload.value)
        out = []
        for width, signed in zip(self.spec["out_widths"], (0, 0, 0, 1, 0, 0)):
            v = word & ((1 << width) - 1)
            out.append(_signed(v, width) if signed else v)
            word >>= width
        return out

    async def check_done(self, t: int, name: str, cycle: int, expect: int) -> None:
        val = getattr(self.dut, name).value
        got = int(val) if val.is_resolvable else str(val)
        self.compared["cycle_checks"] += 1
        if got != expect:
            self.mismatch(t, f"{name} at cycle {cycle}", expect, got)

    def pack_flit(self, ftype: int, slot: int, index: int, payload: int) -> int:
        sb, vb = self.spec["slot_bits"], self.spec["v_bits"]
        word = ftype & 3
        word |= (slot & ((1 << sb) - 1)) << 2
        word |= (index & ((1 << 24) - 1)) << (2 + sb)
        word |= (payload & ((1 << vb) - 1)) << (2 + sb + 24)
        return word

    async def phase_f(self, st: dict) -> None:
        dut, t, f = self.dut, st["t"], st["fire_cycles"]
        dut.step.value = t
        dut.fire.value = 1  # cycle 0
        await self.edges(1)
        dut.fire.value = 0
        await self.check_done(t, "f_done", 0, int(f == 0))
        if f > 1:
            await self.edges(f - 1)
            await self.check_done(t, "f_done", f - 1, 0)
        if f > 0:
            await self.edges(1)
            await self.check_done(t, "f_done", f, 1)

    async def barrier(self, st: dict) -> None:
        dut, sp, t = self.dut, self.spec, st["t"]
        lanes, vb, n = sp["lanes"], sp["v_bits"], sp["n"]
        got_v = []
        for g in range(-(-n // lanes)):
            dut.dbg_maddr.value = g
            await Timer(1, "ps")
            word = int(dut.dbg_v.value)
            got_v += [_signed((word >> (lane * vb)) & ((1 << vb) - 1), vb) for lane in range(lanes)]
        for j, (e, g_) in enumerate(zip(st["membranes"], got_v[:n])):
            self.compared["membranes"] += 1
            if e != g_:
                self.mismatch(t, "membrane", e, g_, neuron=j)
        if st["spikes"] is not None:
            dut.dbg_haddr.value = t % sp["history"]
            await Timer(1, "ps")
            word = int(dut.dbg_h.value)
            got_s = [(word >> j) & 1 for j in range(n)]
            for j, (e, g_) in enumerate(zip(st["spikes"], got_s[:n])):
                self.compared["spikes"] += 1
                if e != g_:
                    self.mismatch(t, "spike", e, g_, neuron=j)
        busy = int(dut.busy.value)
        self.compared["busy"] += 1
        if busy != st["busy"]:
            self.mismatch(t, "busy cycles of the step", st["busy"], busy)
        await self.edges(sp["barrier"])
        self.compared["steps"] += 1


@cocotb.test()
async def core_bench(dut):
    """Replay every step of the simulator's trace on the core and score it."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _Bench(dut, spec)
    names = (
        "rst",
        "start",
        "pphase",
        "fire",
        "events__valid",
        "events__payload",
        "flits__ready",
        "step",
        "dbg_maddr",
        "dbg_haddr",
    )
    for name in names:
        getattr(dut, name).value = 0
    await Timer(1, "ns")
    # low first: an X -> 1 clock at time 0 is a posedge that would load X into every register
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
    await RisingEdge(dut.clk)
    t0 = time.perf_counter()
    for st in spec["steps"]:
        await bench.phase_i(st)
        await bench.phase_f(st)
        await bench.barrier(st)
    wall = time.perf_counter() - t0
    with open(os.environ["SPIKEFORGE_COSIM_OUT"], "w") as fh:
        json.dump(
            {"compared": bench.compared, "cycles": bench.cycles, "wall_s": wall, "mismatches": bench.mismatches}, fh
        )
