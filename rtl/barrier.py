"""The barrier unit (``docs/architecture.md`` section 4), shared by :class:`~spikeforge.rtl.array.CoreArray`
and :class:`~spikeforge.rtl.rounds.RoundsArray`: a counter of the cycles a done condition has held.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BarrierUnit"]


class BarrierUnit(wiring.Component):
    """``done`` rises ``cycles`` cycles after ``cond`` first holds, and stays high while it holds.

    With ``now = 0`` in a cycle where ``restart`` is high (a phase or step starts: its cycle 0) and
    ``now = count`` otherwise, the next ``count`` is 0 when ``cond`` is low, else ``min(now + 1,
    cycles)``, and ``done = (count >= cycles)``: ``count`` is the cycles ``cond`` has held since it
    last rose or the last restart (before this cycle), saturating at ``cycles``. A phase whose
    condition first holds at its cycle ``E`` (and then holds) sees ``done`` at ``E + cycles``.

    ``done`` is a register's output, not a function of this cycle's ``cond`` or ``restart``: the
    :class:`~spikeforge.rtl.sequencer.Sequencer` starts the next phase (``restart``, and the cores'
    ``start``/``fire``, on which their done conditions depend) in the cycle ``done`` rises. In that
    cycle ``done`` is still the phase's that ended; it falls after the restart.

    Parameters
    ----------
    cycles : int
        The barrier's cycles (``barrier_cycles``, plus any test offset), at least 1.
    """

    def __init__(self, cycles: int) -> None:
        if cycles < 1:
            raise ValueError(
                f"a barrier of {cycles} cycles cannot close a phase a cycle after its condition; it must be 1 or more."
            )
        self.cycles = int(cycles)
        super().__init__({"cond": In(1), "restart": In(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bar = self.cycles
        count = Signal(range(bar + 2))
        now = Signal.like(count)
        m.d.comb += now.eq(Mux(self.restart, 0, count))
        m.d.comb += self.done.eq(count >= bar)
        with m.If(~self.cond):
            m.d.sync += count.eq(0)
        with m.Elif(now < bar):
            m.d.sync += count.eq(now + 1)
        with m.Else():
            m.d.sync += count.eq(now)
        return m
