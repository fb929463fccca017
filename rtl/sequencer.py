"""The array's sequencer (``docs/architecture.md`` section 4): it runs an inference's steps and phases.

Shared by :class:`~spikeforge.rtl.array.CoreArray` (resident and ``swap`` mode) and
:class:`~spikeforge.rtl.rounds.RoundsArray`: the host gives ``go`` once, and the sequencer drives
the cores' ``start``/``pphase``/``fire`` and ``step`` itself, starting each phase in the cycle the
barrier unit's ``done`` of the one before rises (the contract's cycle 0 of the next phase).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .flits import STEP_BITS
from .phases import PH_F, PH_I, PH_IDLE, PH_LOAD, PH_P, PH_ROUNDS, PHASE_NAMES

__all__ = ["Sequencer", "PH_IDLE", "PH_LOAD", "PH_I", "PH_P", "PH_F", "PH_ROUNDS", "PHASE_NAMES"]


class Sequencer(wiring.Component):
    """Steps ``0 .. steps - 1`` of one inference, phase after phase, each starting in the cycle the
    previous phase's barrier closes.

    Ports: ``go`` (start an inference; taken when none is under way), ``done`` (the barrier unit's:
    the phase under way and its barrier are over), ``ready`` (swap mode: the pieces of the step
    to start next are loaded; tie to 1 otherwise), ``plive`` (some core holds a partial piece live
    at ``step``, OR-ed over the cores). Outputs, all of the current cycle: ``step`` (the step
    under way; it changes in the cycle the next one starts, also for the cores, whose encoders
    send a step's spikes whenever ``step`` names it), ``phase`` (a
    ``PH_*`` code), ``start`` (with ``pphase``: phase I or P starts now, this is its cycle 0),
    ``pphase``, ``fire`` (phase F starts now), ``restart`` (``start | fire``: the barrier unit counts
    from 0), ``step_end`` (the barrier of step ``step - 1``'s phase F closed now, swap mode's DMA),
    ``launch`` (``go`` is taken now: swap mode's loaders request their first pieces), ``running``
    and ``finished`` (the last step's barrier closed; until the next ``go``). An inference starts
    from the state the last one left (reset the array for a fresh one).

    With ``ph``, ``t`` the registered phase and step, each cycle's phase is (``rounds=False``)::

        IDLE, go:            step 0: I when ready (start), else LOAD (step 0 waiting)
        LOAD, ready:         I of the step waiting (start)
        I, done:             P when plive (start, pphase), else F (fire)
        P, done:             F (fire)
        F, done:             IDLE and finished when t + 1 = steps, else step t + 1: I when
                             ready (start), else LOAD (step t + 1 waiting; ``step`` stays t)

    and with ``rounds=True`` every step is one ``ROUNDS`` phase: ``IDLE, go`` and ``ROUNDS, done``
    (unless the last step) start step 0 or ``t + 1`` (``start``). Otherwise the phase and step hold.
    A phase with end ``E`` and its barrier thus take ``E + barrier_cycles`` cycles, the cycle ``done``
    rises being the next phase's cycle 0, and a swap-mode step waits in LOAD exactly its DRAM stall.
    ``done`` must not depend on ``start``/``fire`` in the same cycle (the barrier unit's is a register).

    Parameters
    ----------
    steps : int
        The inference's steps (``graph.total_steps``), at least 1.
    rounds : bool
        Rounds mode: one phase per step (section 7).
    skip_p : bool
        Test hook: phase P never runs (its partial sums stay unsent).
    late : int
        Test hook: each phase starts this many cycles after ``done`` rises instead of in that cycle.
    """

    def __init__(self, steps: int, *, rounds: bool = False, skip_p: bool = False, late: int = 0) -> None:
        if not 1 <= steps < 1 << STEP_BITS:
            top = (1 << STEP_BITS) - 1
            raise ValueError(f"an inference of {steps} steps cannot be sequenced; it needs 1 to {top}.")
        if late < 0:
            raise ValueError(f"a sequencer {late} cycles late is negative; the late hook must be 0 or more.")
        self.steps, self.rounds, self.skip_p, self.late = int(steps), bool(rounds), bool(skip_p), int(late)
        super().__init__(
            {
                "go": In(1),
                "done": In(1),
                "ready": In(1),
                "plive": In(1),
                "step": Out(STEP_BITS),
                "phase": Out(3),
                "start": Out(1),
                "pphase": Out(1),
                "fire": Out(1),
                "restart": Out(1),
                "step_end": Out(1),
                "launch": Out(1),
                "running": Out(1),
                "finished": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        first = PH_ROUNDS if self.rounds else PH_I  # a step's first phase
        ph = Signal(3, init=PH_IDLE)
        t = Signal(STEP_BITS)
        t_wait = Signal(STEP_BITS)  # in LOAD: the step waiting for its pieces
        fin = Signal()
        ph_now, t_now, t_wait_now, fin_now = Signal.like(ph), Signal.like(t), Signal.like(t_wait), Signal()
        done = self.done
        if self.late:  # test hook: `done` seen `late` cycles after it rose (it stays high until a restart)
            held = Signal(range(self.late + 1))
            m.d.sync += held.eq(Mux(self.restart | ~done, 0, Mux(held < self.late, held + 1, held)))
            done = self.done & (held == self.late)
        last = t == self.steps - 1
        m.d.comb += [ph_now.eq(ph), t_now.eq(t), t_wait_now.eq(t_wait), fin_now.eq(fin)]
        # a step starts once its pieces are loaded; until then `step` (and the cores' step) stays the
        # step before: the cores' encoders send a step's spikes whenever `step` names it
        go_on = self.ready | self.rounds

        enter = Signal()  # a phase starts in this cycle (its cycle 0)
        with m.Switch(ph):
            with m.Case(PH_IDLE):
                with m.If(self.go):
                    m.d.comb += [self.launch.eq(1), fin_now.eq(0), t_now.eq(0), t_wait_now.eq(0)]
                    m.d.comb += [ph_now.eq(Mux(go_on, first, PH_LOAD)), enter.eq(go_on)]
            with m.Case(PH_LOAD):
                with m.If(self.ready):
                    m.d.comb += [ph_now.eq(PH_I), t_now.eq(t_wait), enter.eq(1)]
            with m.Case(PH_I):
                with m.If(done):
                    p_runs = self.plive if not self.skip_p else 0
                    m.d.comb += [ph_now.eq(Mux(p_runs, PH_P, PH_F)), enter.eq(1)]
            with m.Case(PH_P):
                with m.If(done):
                    m.d.comb += [ph_now.eq(PH_F), enter.eq(1)]
            with m.Case(PH_F, PH_ROUNDS):
                with m.If(done):
                    m.d.comb += self.step_end.eq(ph == PH_F)
                    with m.If(last):
                        m.d.comb += [ph_now.eq(PH_IDLE), fin_now.eq(1)]
                    with m.Elif(go_on):
                        m.d.comb += [ph_now.eq(first), t_now.eq(t + 1), enter.eq(1)]
                    with m.Else():
                        m.d.comb += [ph_now.eq(PH_LOAD), t_wait_now.eq(t + 1)]
        m.d.sync += t_wait.eq(t_wait_now)
        m.d.sync += [ph.eq(ph_now), t.eq(t_now), fin.eq(fin_now)]

        m.d.comb += [
            self.step.eq(t_now),
            self.phase.eq(ph_now),
            self.start.eq(enter & (ph_now != PH_F)),
            self.pphase.eq(enter & (ph_now == PH_P)),
            self.fire.eq(enter & (ph_now == PH_F)),
            self.restart.eq(enter),
            self.running.eq(ph_now != PH_IDLE),
            self.finished.eq(fin_now),
        ]
        return m
