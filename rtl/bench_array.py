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
* after each phase, the array's barrier unit: ``done`` low at ``end + barrier_cycles - 1`` and
  high at ``end + barrier_cycles``; the phases and their barriers add up to the simulator's
  ``step_cycles[t]``;
* swap mode, before every step: the array's ``ready`` (its DRAM loads of the step's pieces done)
  must rise after exactly the simulator's DRAM stall of the step;
* barrier: for every core, every membrane, the spike row of ``t`` where its piece fired, its
  running payload sums, max-pool counts and MBE shift words (``dbg_saddr``), its busy cycles and
  the number of flits its encoder sent, exactly.

After the last step the host reads the logits (section 5): for each output piece in piece order,
one membrane word per cycle over ``rd_core``/``rd_addr``, each arriving on ``rd_data`` in the next
cycle; every logit must equal the simulator's.

Results go to ``$SPIKEFORGE_COSIM_OUT`` as in :mod:`spikeforge.rtl.bench_core`.
"""

from __future__ import annotations

import json
import os
import time

import cocotb

from .bench_common import BenchBase, signed, start, write_results

__all__ = ["array_bench"]


class _ArrayBench(BenchBase):
    where = "array "

    def __init__(self, dut, spec: dict) -> None:
        super().__init__(
            dut,
            spec,
            ("host_flits", "cycle_checks", "membranes", "spikes", "busy", "packets", "steps", "sums")
            + ("logits", "readout_cycles", "step_cycles", "stall_cycles", "stalled_steps"),
        )

    def pack(self, fields: list[int]) -> int:
        word, shift = 0, 0
        for v, width in zip(fields, self.spec["out_widths"]):
            word |= (v & ((1 << width) - 1)) << shift
            shift += width
        return word

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
                self.check(t, "i_done", 0, 1)
            return c - 1
        if end - 1 < c - 1:
            self.mismatch(t, "phase I ends before the host finished", end, c - 1)
            return c - 1
        await self.edges(end - c)
        self.check(t, "i_done", end - 1, 0)
        await self.edges(1)
        self.check(t, "i_done", end, 1)
        return end

    async def barrier_done(self, t: int, now: int, end: int) -> int:
        """The barrier unit after a phase that ended at ``end`` (outputs of cycle ``now`` readable):
        ``done`` must first be high at ``end + barrier``; returns the cycle it rose (watched up to
        ``barrier`` cycles past that), so the step's cycles are the hardware's, not the spec's."""
        bar = self.spec["barrier"]
        target = end + bar
        if now > end:  # the phase's end already differed (reported)
            return target
        c = now
        while True:
            val = self.dut.done.value
            if val.is_resolvable and int(val) == 1:
                break
            if c >= target + bar:
                break
            await self.edges(1)
            c += 1
        self.compared["cycle_checks"] += 1
        if c != target:
            got = c if c < target + bar else f"not by {c}"
            self.mismatch(t, f"{self.where}done (the barrier unit) first high at cycle", target, got)
        return c

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
        await self.expect_end(t, "i_done", end)
        return await self.barrier_done(t, end, end)

    async def phase_f(self, st: dict) -> None:
        dut, t, f = self.dut, st["t"], st["phase_f"]
        dut.fire.value = 1
        await self.edges(1)
        dut.fire.value = 0
        await self.expect_end(t, "f_done", f)
        return await self.barrier_done(t, f, f)

    async def wait_loads(self, st: dict, ready: int) -> int:
        """Swap mode: the controller starts step ``t`` only when the array's ``ready`` is high (its
        pieces loaded from DRAM); ``ready`` is the value seen at the previous step's end. Returns the
        cycles waited, which must equal the simulator's DRAM stall of the step."""
        t, want = st["t"], st["stall"]
        waited = 0
        limit = want + 4 * self.spec["barrier"] + 1000
        while not ready and waited < limit:
            await self.edges(1)
            waited += 1
            val = self.dut.ready.value
            ready = int(val) if val.is_resolvable else 0
        self.compared["stall_cycles"] += waited
        self.compared["stalled_steps"] += int(waited > 0)
        if waited != want or not ready:
            got = waited if ready else f"not ready after {waited}"
            self.mismatch(t, "DRAM stall cycles before the step (array ready)", want, got)
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
        self.compared["steps"] += 1

    async def readout(self, t_end: int) -> None:
        """The host reads every output piece's accumulators: one word address per cycle from cycle 0,
        the word on ``rd_data`` in the next cycle (``words + 1`` cycles in all)."""
        dut, lanes, vb = self.dut, self.spec["lanes"], self.spec["v_bits"]
        reads = [(out, w) for out in self.spec["readout"] for w in range(out["words"])]
        c0 = self.cycles
        # a value read after an edge is the cycle's before it: word i is seen one edge after the one
        # that latched its address (the read port's cycle of latency)
        for i in range(len(reads) + 1):
            if i < len(reads):
                dut.rd_core.value = reads[i][0]["core"]
                dut.rd_addr.value = reads[i][1]
            await self.edges(1)
            if i == 0:
                continue
            out, w = reads[i - 1]
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
        self.compared["readout_cycles"] = self.cycles - c0


@cocotb.test()
async def array_bench(dut):
    """Replay the host's flits of every step on the array and score it against the simulator."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _ArrayBench(dut, spec)
    inputs = ("rst", "start", "pphase", "fire", "host__valid", "host__payload", "host_done", "step")
    await start(dut, (*inputs, "dbg_core", "dbg_maddr", "dbg_haddr", "dbg_saddr", "rd_core", "rd_addr"))
    t0 = time.perf_counter()
    ready = int(dut.ready.value)  # cycle 0: the loaders have just made their first requests
    for st in spec["steps"]:
        stall = await bench.wait_loads(st, ready) if spec.get("swap") else 0
        cycles = await bench.barrier_done(st["t"], await bench.phase_i(st), st["phase_i"])
        if st["phase_p"] > 0:
            cycles += await bench.phase_p(st)
        cycles += await bench.phase_f(st)
        ready = int(dut.ready.value) if dut.ready.value.is_resolvable else 0  # at the step's end
        bench.compared["step_cycles"] += 1
        if cycles != st["cycles"]:
            bench.mismatch(st["t"], "cycles of the step (phases and their barriers)", st["cycles"], cycles)
        if stall + cycles != st["cycles"] + st["stall"]:
            what = "cycles of the step with its DRAM stall"
            bench.mismatch(st["t"], what, st["cycles"] + st["stall"], stall + cycles)
        await bench.barrier(st)
    await bench.readout(spec["steps"][-1]["t"] if spec["steps"] else 0)
    write_results(bench, time.perf_counter() - t0)
