"""cocotb bench of the rounds-mode array (started by :func:`spikeforge.rtl.cosim.cosim_rounds`).

The bench is the host of ``rtl/rounds.py``'s array, which runs its steps itself (its
:class:`~spikeforge.rtl.sequencer.Sequencer`). Before the run the bench writes the input's words
into the DRAM (section 5: the host's input); then it gives ``go`` once (cycle 0, step 0's cycle 0)
and, per step ``t`` from the simulator's trace (``$SPIKEFORGE_COSIM_IN``), from its cycle 0 ``s``:

* ``phase`` says a rounds step and ``step`` says ``t`` at ``s``; the array's ``done`` (every core's
  last write-back ended, plus ``barrier_cycles``) must be low until cycle ``s + step_cycles[t] - 1``
  and high at ``s + step_cycles[t]``: the loads, integration, firing and write-backs of every
  round, on one DRAM channel, take exactly the simulator's cycles; the next step (after the last:
  ``finished``) starts in the cycle ``done`` rises;
* barrier, in that cycle (the next step changes nothing before the clock edge): every piece's
  membranes (an mbe piece's ``X`` and basis blocks; then a product's or max-pool's running-count or
  payload-sum words and an mbe piece's shift words) and its row of ``t`` (spike bits, or the
  ``v_bits`` payloads of an mbe piece or graded max-pool), read back from the DRAM (``dbg_daddr`` ->
  ``dbg_ddata``), and every core's busy cycles of the step.

After the last step the logits are read from the output pieces' state words in the DRAM. Results go
to ``$SPIKEFORGE_COSIM_OUT`` as in :mod:`spikeforge.rtl.bench_core`. The bench steps the clock
itself (``manual``: reads through the debug ports take no clock edge).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.triggers import Timer

from .bench_common import BenchBase, signed, start, write_results
from .phases import PH_IDLE, PH_ROUNDS, PHASE_NAMES

__all__ = ["rounds_bench"]


class _RoundsBench(BenchBase):
    where = "array "
    manual = True

    def __init__(self, dut, spec: dict) -> None:
        super().__init__(
            dut, spec, ("cycle_checks", "membranes", "counts", "spikes", "busy", "steps", "logits", "step_cycles")
        )

    async def dram(self, addr: int) -> int:
        """The DRAM word at ``addr`` (the read port is combinational)."""
        self.dut.dbg_daddr.value = addr
        await Timer(1, "ps")
        return int(self.dut.dbg_ddata.value)

    async def values(self, base: int, n: int, positions: list | None = None) -> list[int]:
        """``n`` signed ``v_bits`` lanes from the DRAM words at ``base``, lane 0 low; neuron ``j`` at
        ``positions[j]`` (``word * lanes + lane``) when given, else in local order."""
        lanes, vb = self.spec["lanes"], self.spec["v_bits"]
        words = -(-(max(positions) + 1 if positions else n) // lanes)
        out = []
        for g in range(words):
            word = await self.dram(base + g)
            out += [signed((word >> (lane * vb)) & ((1 << vb) - 1), vb) for lane in range(lanes)]
        return [out[q] for q in positions] if positions else out[:n]

    async def host_input(self) -> None:
        dut = self.dut
        for addr, word in self.spec["host"]:
            dut.hw_addr.value = addr
            dut.hw_data.value = word
            dut.hw_en.value = 1
            await self.edges(1)
        dut.hw_en.value = 0

    def read(self, name: str) -> int:
        """Output ``name`` in the cycle under way (-1 when X or Z)."""
        val = getattr(self.dut, name).value
        return int(val) if val.is_resolvable else -1

    async def run_step(self, st: dict, last: bool) -> int:
        """Step ``t`` from its cycle 0 (the cycle under way); returns the cycle ``done`` first rose
        (the step's cycles). Afterwards the cycle under way is the next step's cycle 0."""
        dut, t, want = self.dut, st["t"], st["cycles"]
        got = (PHASE_NAMES.get(self.read("phase"), "?"), self.read("step"))
        self.compared["cycle_checks"] += 1
        if got != ("rounds", t):
            self.mismatch(t, f"{self.where}phase and step at the step's cycle 0", ["rounds", t], list(got))
        await self.edges(1)  # in cycle 0 done is still the step before's
        dut.go.value = 0
        c = 1
        while self.read("done") != 1 and c <= want + 4 * self.spec["barrier"] + 1000:
            await self.edges(1)
            c += 1
        self.compared["cycle_checks"] += 1
        self.compared["step_cycles"] += 1
        if c != want:
            self.mismatch(t, "cycles of the step (its rounds' loads, work and write-backs, and the barrier)", want, c)
        # the next step (after the last: the end of the inference) starts in the cycle done rises
        nxt = [PHASE_NAMES[PH_IDLE], t] if last else [PHASE_NAMES[PH_ROUNDS], t + 1]
        got = [PHASE_NAMES.get(self.read("phase"), "?"), self.read("step")]
        self.compared["cycle_checks"] += 1
        if got != nxt or (last and self.read("finished") != 1):
            what = "finished after the last step" if last else "phase and step of the next step"
            self.mismatch(t, f"{self.where}{what} in the cycle done rises", nxt, got)
        return c

    async def barrier(self, st: dict) -> None:
        dut, t, width = self.dut, st["t"], self.spec["width"]
        for pc in st["pieces"]:
            got = await self.values(pc["state_base"], len(pc["membranes"]), pc["positions"])
            for j, (e, g) in enumerate(zip(pc["membranes"], got)):
                self.compared["membranes"] += 1
                if e != g:
                    self.mismatch(t, "membrane (DRAM state)", e, g, neuron=j, core=pc["core"], piece=pc["piece"])
            if pc["counts"] is not None:  # running counts or payload sums, shift words, after the membranes
                base = pc["state_base"] + pc["mem_words"]
                for w, e in enumerate(pc["counts"]):
                    got_w = await self.dram(base + w)
                    self.compared["counts"] += 1
                    if got_w != e:
                        self.mismatch(
                            t, "running-count word (DRAM state)", e, got_w, neuron=w, core=pc["core"], piece=pc["piece"]
                        )
            if pc["spikes"] is not None:
                ring = t % (1 << self.spec["ring_shift"])  # the ring's row of step t (RoundsPlan.ring_shift)
                base = pc["spike_base"] + (ring << self.spec["spike_shift"])
                rb = pc["row_bits"]  # 1 (a spike) or v_bits (a signed payload) per unit
                row = 0
                for g in range(-(-pc["n"] * rb // width)):  # a row is `width` bits per word, unit 0 lowest
                    row |= await self.dram(base + g) << (g * width)
                got = [(row >> (j * rb)) & ((1 << rb) - 1) for j in range(pc["n"])]
                got = [signed(v, rb) for v in got] if rb > 1 else got
                what = "payload (DRAM row)" if rb > 1 else "spike (DRAM row)"
                for j, e in enumerate(pc["spikes"]):
                    self.compared["spikes"] += 1
                    if e != got[j]:
                        self.mismatch(t, what, e, got[j], neuron=j, core=pc["core"], piece=pc["piece"])
        for k, want in st["busy"]:
            dut.dbg_core.value = k
            await Timer(1, "ps")
            got = int(dut.dbg_busy.value)
            self.compared["busy"] += 1
            if got != want:
                self.mismatch(t, "busy cycles of the step", want, got, core=k)
        self.compared["steps"] += 1

    async def readout(self, t_end: int) -> None:
        for out in self.spec["readout"]:
            got = await self.values(out["state_base"], len(out["logits"]), out["positions"])
            for j, (e, g) in enumerate(zip(out["logits"], got)):
                self.compared["logits"] += 1
                if e != g:
                    self.mismatch(t_end, "logit (DRAM state)", e, g, neuron=out["outputs"][j], piece=out["piece"])


@cocotb.test()
async def rounds_bench(dut):
    """Give ``go``, watch every step's rounds on the array and score it against the simulator."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _RoundsBench(dut, spec)
    await start(dut, ("rst", "go", "hw_en", "hw_addr", "hw_data", "dbg_daddr", "dbg_core"), clock=False)
    t0 = time.perf_counter()
    await bench.host_input()
    dut.go.value = 1  # cycle 0: step 0 starts
    await Timer(1, "ps")
    for i, st in enumerate(spec["steps"]):
        await bench.run_step(st, i + 1 == len(spec["steps"]))
        await bench.barrier(st)  # the step's state, in the cycle its barrier closed
    await bench.readout(spec["steps"][-1]["t"] if spec["steps"] else 0)
    write_results(bench, time.perf_counter() - t0)
