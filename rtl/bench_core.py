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
  ``t``, the busy-cycle counter and the MBE ViT units' running payload sums, max-pool maxima and
  shift words (``dbg_saddr``), and compares them with the simulator's, exactly.

The clock only advances between transactions (``ClockCycles``), never one Python callback per
cycle. Results (counts and the mismatches, first first) go to ``$SPIKEFORGE_COSIM_OUT``.
"""

from __future__ import annotations

import json
import os
import time

import cocotb

from .bench_common import BenchBase, signed, start, write_results

__all__ = ["core_bench"]


class _Bench(BenchBase):
    def __init__(self, dut, spec: dict) -> None:
        super().__init__(
            dut, spec, ("events", "cycle_checks", "membranes", "spikes", "busy", "steps", "packets", "sums")
        )

    def location(self) -> dict:
        return {"core": self.spec["core"], "piece": self.spec["piece"]}

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
                    self.check(t, "i_done", at, item)
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
        for width, is_signed in zip(self.spec["out_widths"], (0, 0, 0, 1, 0, 0)):
            v = word & ((1 << width) - 1)
            out.append(signed(v, width) if is_signed else v)
            word >>= width
        return out

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
        await self.expect_end(t, "f_done", f)

    async def barrier(self, st: dict) -> None:
        dut, t = self.dut, st["t"]
        await self.score_state(
            t,
            self.spec["n"],
            st["membranes"],
            st["spikes"],
            self.spec.get("positions"),
            self.spec.get("hist_bits", 1),
        )
        if st.get("sums") is not None:
            await self.score_sums(t, st["sums"], self.spec["sum_positions"])
        busy = int(dut.busy.value)
        self.compared["busy"] += 1
        if busy != st["busy"]:
            self.mismatch(t, "busy cycles of the step", st["busy"], busy)
        await self.edges(self.spec["barrier"])
        self.compared["steps"] += 1


@cocotb.test()
async def core_bench(dut):
    """Replay every step of the simulator's trace on the core and score it."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _Bench(dut, spec)
    inputs = ("rst", "start", "pphase", "fire", "events__valid", "events__payload", "flits__ready", "step")
    await start(dut, (*inputs, "dbg_maddr", "dbg_haddr", "dbg_saddr"))
    t0 = time.perf_counter()
    for st in spec["steps"]:
        await bench.phase_i(st)
        await bench.phase_f(st)
        await bench.barrier(st)
    write_results(bench, time.perf_counter() - t0)
