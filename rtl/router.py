"""Mesh router in Amaranth (``docs/architecture.md`` section 6).

Five input ports (north, south, east, west, local: index 0..4), each a FIFO of
``router_buffer_flits``. Every cycle each output port grants one flit among the input FIFO heads
that route to it (XY routing: along ``x`` to the destination column, then along ``y``; ``y``
grows southwards), round-robin starting after the input it granted last (local at the start of
every phase, ``start``: the simulator's ``mesh_phase`` starts each phase so), if
the downstream FIFO had room at the start of the cycle (its ``ready``, a FIFO's "not full"
before this cycle's moves). A granted flit is in the downstream FIFO at the next cycle, and a
head written in cycle ``c`` is eligible from ``c + 1``: an uncontended flit over ``h`` hops,
injected at ``c``, is poppable by its core at ``c + h + 2``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig

from .flits import out_flit_layout

__all__ = ["Router", "PORTS"]

PORTS = ("n", "s", "e", "w", "l")


class Router(wiring.Component):
    """The router beside core ``(x, y)``: ``in_<p>`` / ``out_<p>`` streams of whole flits per port ``p``.

    Parameters
    ----------
    hw : HardwareConfig
        ``[noc] router_buffer_flits`` and the flit widths.
    x, y : int
        Its column and row.
    """

    def __init__(self, hw: HardwareConfig, x: int, y: int) -> None:
        self.hw, self.x, self.y = hw, x, y
        layout = out_flit_layout(hw)
        members = {}
        for p in PORTS:
            members[f"in_{p}"] = In(stream.Signature(layout))
            members[f"out_{p}"] = Out(stream.Signature(layout))
        members["empty"] = Out(1)
        members["start"] = In(1)  # a phase begins: the round-robin pointers go back to "last granted: L"
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        layout = out_flit_layout(self.hw)
        width = layout.size
        depth = self.hw.noc.router_buffer_flits
        heads, valid, pops, fifos = [], [], [], []
        for p in PORTS:
            q = fifo.SyncFIFO(width=width, depth=depth)
            m.submodules[f"fifo_{p}"] = q
            src = getattr(self, f"in_{p}")
            m.d.comb += [q.w_data.eq(src.payload.as_value()), q.w_en.eq(src.valid), src.ready.eq(q.w_rdy)]
            fifos.append(q)
            heads.append(data.View(layout, q.r_data))
            valid.append(q.r_rdy)
            pops.append(Signal(name=f"pop_{p}"))
        m.d.comb += self.empty.eq(~(valid[0] | valid[1] | valid[2] | valid[3] | valid[4]))
        # the output each head wants (XY routing)
        want = []
        for i in range(5):
            h = heads[i]
            w = Signal(range(5), name=f"want_{PORTS[i]}")
            with m.If(h.x > self.x):
                m.d.comb += w.eq(2)
            with m.Elif(h.x < self.x):
                m.d.comb += w.eq(3)
            with m.Elif(h.y > self.y):
                m.d.comb += w.eq(1)
            with m.Elif(h.y < self.y):
                m.d.comb += w.eq(0)
            with m.Else():
                m.d.comb += w.eq(4)
            want.append(w)
        for o, p in enumerate(PORTS):
            out = getattr(self, f"out_{p}")
            last = Signal(range(5), init=4, name=f"last_{p}")
            last_now = Signal(range(5), name=f"last_now_{p}")
            m.d.comb += last_now.eq(Mux(self.start, 4, last))
            with m.If(self.start):
                m.d.sync += last.eq(4)
            chosen = Signal(range(5), name=f"grant_{p}")
            found = Signal(name=f"found_{p}")
            with m.Switch(last_now):
                for lv in range(5):
                    with m.Case(lv):
                        order = [(lv + step) % 5 for step in range(1, 6)]
                        for i in reversed(order):  # the last assignment wins: the first in round-robin order
                            with m.If(valid[i] & (want[i] == o)):
                                m.d.comb += [found.eq(1), chosen.eq(i)]
            m.d.comb += [out.valid.eq(found), out.payload.eq(heads[0].as_value())]
            for i in range(1, 5):
                with m.If(chosen == i):
                    m.d.comb += out.payload.eq(heads[i].as_value())
            with m.If(found & out.ready):
                m.d.sync += last.eq(chosen)
                for i in range(5):
                    with m.If(chosen == i):
                        m.d.comb += pops[i].eq(1)
        for i in range(5):
            m.d.comb += fifos[i].r_en.eq(pops[i])
        return m
