"""cocotb bench of the whole core array (started by :func:`spikeforge.rtl.cosim.cosim_array`).

The array runs its steps itself (its :class:`~spikeforge.rtl.sequencer.Sequencer`); the bench gives
``go`` once, drives the host and watches. Cycle 0 is the cycle ``go`` is high. From the
simulator's trace (``$SPIKEFORGE_COSIM_IN``), per step ``t``, with ``S`` the step's cycle 0 (``go``'s
cycle, or the cycle the last barrier of step ``t - 1`` closed):

* swap mode: the array's ``phase`` is ``load`` (waiting for the step's pieces from DRAM) from ``S``
  for exactly the simulator's DRAM stall of the step; the step's phase I starts at ``a``, after it;
* each phase (I; P at the steps the simulator has one; F) with end ``E`` starting at cycle ``s``:
  ``phase`` and ``step`` say so at ``s``; the phase's done (``i_done`` for I and P, ``f_done`` for
  F) is low at ``s + E - 1`` and high at ``s + E`` (high at ``s`` when ``E = 0``); the barrier
  unit's ``done`` first rises (after ``s``) at ``s + E + barrier_cycles``, and the next phase (or
  step, or the end of the inference: ``finished``) starts in that same cycle; the phases and their
  barriers add up to the simulator's ``step_cycles[t]``;
* the host driver offers the step's flits from the cycle the previous step's phase I is over (the
  array opens its port in phase I only): each must be taken at the cycle (from ``a``) the
  simulator's host injected it, and ``host_done`` rises after the last;
* in the cycle the step's last barrier closes (its state is the step's; the next step starts in it,
  changing nothing before the clock edge): for every core, every membrane, the spike row of ``t``
  where its piece fired, its running payload sums, max-pool counts and MBE shift words
  (``dbg_saddr``), its busy cycles and the number of flits its encoder sent, exactly;
* the packet monitor: in every cycle of phases I and P, each packet a core's router takes
  (``dbg_taken``, ``dbg_flits``) is recorded with its cycle from the phase's cycle 0; at the step's
  last barrier every core's packets of each phase must equal the simulator's, one by one (cycle,
  type, slot, index, payload, destination), in order: spikes and payloads in phase I, partial sums
  in phase P.

After the last step the host reads the logits (section 5): for each output piece in piece order,
one membrane word per cycle over ``rd_core``/``rd_addr``, each arriving on ``rd_data`` in the next
cycle; every logit must equal the simulator's. The bench steps the clock itself (``manual``: reads
through the debug ports take no clock edge).

Results go to ``$SPIKEFORGE_COSIM_OUT`` as in :mod:`spikeforge.rtl.bench_core`.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.triggers import Timer

from .bench_common import BenchBase, signed, start, write_results
from .phases import PH_F, PH_I, PH_IDLE, PH_LOAD, PH_P, PHASE_NAMES

__all__ = ["array_bench"]


class _ArrayBench(BenchBase):
    where = "array "
    manual = True

    def __init__(self, dut, spec: dict) -> None:
        super().__init__(
            dut,
            spec,
            ("host_flits", "cycle_checks", "membranes", "spikes", "busy", "packets", "steps", "sums")
            + ("logits", "readout_cycles", "step_cycles", "stall_cycles", "stalled_steps", "out_packets"),
        )
        # the packet monitor: (step, phase, core) -> the packets its router took, as the simulator lists them
        self.out_got: dict[tuple[int, int, int], list[list[int]]] = {}
        self.p_start: dict[int, int] = {}  # the cycle each step's phase P started
        self.now = 0  # the cycle under way (0: go's)
        self.host_t, self.host_i = 0, 0  # the step whose flits the host offers, and its next flit
        self.i_start: dict[int, int] = {}  # the cycle each step's phase I started
        n = sum(st["stall"] + st["cycles"] for st in spec["steps"])
        self.limit = n + 4 * (spec["barrier"] + 2) * (len(spec["steps"]) + 1) + 1000  # a hung array stops here

    def pack(self, fields: list[int]) -> int:
        word, shift = 0, 0
        for v, width in zip(fields, self.spec["out_widths"]):
            word |= (v & ((1 << width) - 1)) << shift
            shift += width
        return word

    def unpack(self, word: int) -> list[int]:
        """A flit's fields (``out_widths``: type, slot, index, payload, x, y; the payload signed)."""
        fields = []
        for k, width in enumerate(self.spec["out_widths"]):
            v = word & ((1 << width) - 1)
            fields.append(signed(v, width) if k == 3 else v)
            word >>= width
        return fields

    def monitor(self, t: int, ph: int, s: int) -> None:
        """Phase ``ph`` (I or P) of step ``t``, begun at cycle ``s``: every packet a core's router takes
        in the cycle under way, with the cycle (from the phase's cycle 0) and its fields."""
        taken = self.read("dbg_taken")
        if taken == 0:
            return
        if taken < 0:
            self.mismatch(t, "packet monitor: a core's flits.valid or ready is undefined (X)", 0, "X")
            return
        word, width, k = int(self.dut.dbg_flits.value), sum(self.spec["out_widths"]), 0
        while taken:
            if taken & 1:
                packet = [self.now - s, *self.unpack(word >> (k * width))]
                self.out_got.setdefault((t, ph, k), []).append(packet)
            taken, k = taken >> 1, k + 1

    def read(self, name: str) -> int:
        """Output ``name`` in the cycle under way (-1 when X or Z)."""
        val = getattr(self.dut, name).value
        return int(val) if val.is_resolvable else -1

    async def settle(self) -> None:
        """The host's inputs for the cycle under way, then what it takes in this cycle.

        The host moves on to step ``t + 1``'s flits once step ``t``'s are taken and the array is past
        its phase I (the array opens the port in phase I only, so offering early is safe)."""
        dut, steps = self.dut, self.spec["steps"]
        dut.go.value = int(self.now == 0)
        ph, t = self.read("phase"), self.read("step")
        while (
            self.host_t + 1 < len(steps)
            and self.host_i >= len(steps[self.host_t]["host"])
            and (t > self.host_t or (t == self.host_t and ph in (PH_P, PH_F)))
        ):
            self.host_t, self.host_i = self.host_t + 1, 0
        flits = steps[self.host_t]["host"] if steps else []
        offer = self.host_i < len(flits)
        dut.host__valid.value = int(offer)
        dut.host_done.value = int(not offer)
        if offer:
            dut.host__payload.value = self.pack(flits[self.host_i][1:])
        await Timer(1, "ps")
        ph, t = self.read("phase"), self.read("step")
        if ph == PH_I and t not in self.i_start:
            self.i_start[t] = self.now
        if ph == PH_P and t not in self.p_start:
            self.p_start[t] = self.now
        if ph in (PH_I, PH_P):
            self.monitor(t, ph, (self.i_start if ph == PH_I else self.p_start)[t])
        if offer and self.read("host__ready") == 1:
            st = steps[self.host_t]
            self.compared["host_flits"] += 1
            got = self.now - self.i_start.get(st["t"], self.now)
            if (t, ph) != (st["t"], PH_I):  # outside the step's phase I: say where
                got = f"cycle {self.now} of the run, step {t}, phase {PHASE_NAMES.get(ph, '?')}"
            if got != flits[self.host_i][0]:
                self.mismatch(st["t"], "host flit taken at cycle", flits[self.host_i][0], got)
            self.host_i += 1

    async def advance(self, k: int = 1) -> None:
        """``k`` clock edges, the host driven in every cycle."""
        for _ in range(k):
            await self.edges(1)
            self.now += 1
            await self.settle()

    async def until(self, cycle: int) -> None:
        if cycle > self.now:
            await self.advance(cycle - self.now)

    def hung(self) -> bool:
        return self.now >= self.limit

    def check_phase(self, t: int, code: int, s: int) -> None:
        """``phase`` and ``step`` in the phase's cycle 0 (``s``)."""
        self.compared["cycle_checks"] += 1
        got = (PHASE_NAMES.get(self.read("phase"), "?"), self.read("step"))
        if got != (PHASE_NAMES[code], t):
            self.mismatch(
                t, f"{self.where}phase and step at the phase's cycle 0 (cycle {s})", [PHASE_NAMES[code], t], list(got)
            )

    async def phase(self, t: int, code: int, end: int, done: str) -> int:
        """One phase from its cycle 0 (the cycle under way) with end ``end`` and its barrier; returns its
        cycles, the cycle the next phase starts (as the array shows it) less its cycle 0."""
        s, bar = self.now, self.spec["barrier"]
        self.check_phase(t, code, s)
        self.check(t, done, 0, int(end == 0))
        if end > 1:
            await self.until(s + end - 1)
            self.check(t, done, end - 1, 0)
        if end > 0:
            await self.until(s + end)
            self.check(t, done, end, 1)
        # the barrier unit's done: in the phase's cycle 0 it is still the phase before's
        target = s + end + bar
        await self.until(s + 1)
        while self.read("done") != 1 and self.now < target + bar and not self.hung():
            await self.advance()
        self.compared["cycle_checks"] += 1
        if self.now != target:
            got = self.now - s if self.read("done") == 1 else f"not by {self.now - s}"
            self.mismatch(t, f"{self.where}done (the barrier unit) first high at cycle", end + bar, got)
        # the next phase starts in the cycle done rises
        rise = self.now
        while self.read("phase") == code and self.read("step") == t and self.now < rise + bar and not self.hung():
            await self.advance()
        self.compared["cycle_checks"] += 1
        if self.now != rise:
            what = f"{self.where}cycle the phase after {PHASE_NAMES[code]} starts (the cycle done rises)"
            self.mismatch(t, what, rise - s, self.now - s)
        return self.now - s

    async def loads(self, st: dict) -> int:
        """Swap mode: the cycles the array waits (``phase`` load) for step ``t``'s pieces, which must
        equal the simulator's DRAM stall of the step; 0 on a resident array."""
        t, want, s = st["t"], st["stall"], self.now
        while self.read("phase") == PH_LOAD and not self.hung():  # (`step` still names the step before)
            await self.advance()
        waited = self.now - s
        self.compared["stall_cycles"] += waited
        self.compared["stalled_steps"] += int(waited > 0)
        if waited != want:
            self.mismatch(t, "DRAM stall cycles before the step (array phase load)", want, waited)
        return waited

    async def barrier(self, st: dict) -> None:
        dut, t = self.dut, st["t"]
        for core in st["cores"]:
            k = core["core"]
            dut.dbg_core.value = k
            await self.score_state(
                t, core["n"], core["membranes"], core["spikes"], core.get("positions"), core.get("hist_bits", 1), core=k
            )
            if core.get("sums") is not None:
                await self.score_sums(t, core["sums"], core["sum_positions"], core=k)
            for name, key in (("dbg_busy", "busy"), ("dbg_sent", "sent")):
                got = int(getattr(dut, name).value)
                self.compared["busy" if key == "busy" else "packets"] += 1
                if got != core[key]:
                    what = "busy cycles of the step" if key == "busy" else "flits sent in phase I"
                    self.mismatch(t, what, core[key], got, core=k)
        for ph, key in ((PH_I, "out"), (PH_P, "out_p")):  # every core's packets, one by one
            for k, want in enumerate(st[key]):
                got = self.out_got.pop((t, ph, k), [])
                self.compared["out_packets"] += len(want)
                if got != want:
                    both = min(len(want), len(got))
                    j = next((j for j in range(both) if want[j] != got[j]), both)  # the first that differs
                    what = f"packet {j} sent in phase {PHASE_NAMES[ph]} (cycle, type, slot, index, payload, x, y)"
                    self.mismatch(t, what, want[j] if j < len(want) else None, got[j] if j < len(got) else None, core=k)
        self.compared["steps"] += 1

    async def readout(self, t_end: int) -> None:
        """The host reads every output piece's accumulators: one word address per cycle from cycle 0,
        the word on ``rd_data`` in the next cycle (``words + 1`` cycles in all)."""
        dut, lanes, vb = self.dut, self.spec["lanes"], self.spec["v_bits"]
        reads = [(out, w) for out in self.spec["readout"] for w in range(out["words"])]
        c0 = self.cycles
        # the address of the cycle under way; after the edge (the read port's cycle of latency) its word
        for out, w in reads:
            dut.rd_core.value = out["core"]
            dut.rd_addr.value = w
            await self.edges(1)
            word = int(dut.rd_data.value)
            for lane in range(lanes):
                j = w * lanes + lane
                if j >= len(out["outputs"]):
                    break
                got = signed(word >> (lane * vb) & ((1 << vb) - 1), vb)
                self.compared["logits"] += 1
                want = out["logits"][j]
                if got != want:
                    where = {"neuron": out["outputs"][j], "core": out["core"]}
                    self.mismatch(t_end, "logit read by the host", want, got, **where)
        self.compared["readout_cycles"] = self.cycles - c0 + 1  # the first address's cycle to the last word's


@cocotb.test()
async def array_bench(dut):
    """Give ``go``, replay the host's flits of every step and score the array against the simulator."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _ArrayBench(dut, spec)
    inputs = ("rst", "go", "host__valid", "host__payload", "host_done")
    await start(dut, (*inputs, "dbg_core", "dbg_maddr", "dbg_haddr", "dbg_saddr", "rd_core", "rd_addr"), clock=False)
    t0 = time.perf_counter()
    await bench.settle()  # cycle 0: go
    for st in spec["steps"]:
        t = st["t"]
        if bench.hung():
            bench.mismatch(t, "the array had not started the step by cycle", bench.limit, bench.now)
            break
        stall = await bench.loads(st)
        cycles = await bench.phase(t, PH_I, st["phase_i"], "i_done")
        if st["phase_p"] > 0:
            cycles += await bench.phase(t, PH_P, st["phase_p"], "i_done")
        cycles += await bench.phase(t, PH_F, st["phase_f"], "f_done")
        bench.compared["step_cycles"] += 1
        if cycles != st["cycles"]:
            bench.mismatch(t, "cycles of the step (phases and their barriers)", st["cycles"], cycles)
        if stall + cycles != st["cycles"] + st["stall"]:
            what = "cycles of the step with its DRAM stall"
            bench.mismatch(t, what, st["cycles"] + st["stall"], stall + cycles)
        await bench.barrier(st)  # the step's state, in the cycle its last barrier closed
    if spec["steps"]:  # the inference is over in the cycle the last barrier closed
        bench.compared["cycle_checks"] += 1
        got = [PHASE_NAMES.get(bench.read("phase"), "?"), bench.read("finished")]
        if got != [PHASE_NAMES[PH_IDLE], 1]:
            bench.mismatch(spec["steps"][-1]["t"], "array phase and finished after the last step", ["idle", 1], got)
    await bench.readout(spec["steps"][-1]["t"] if spec["steps"] else 0)
    write_results(bench, time.perf_counter() - t0)
