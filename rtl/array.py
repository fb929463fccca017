"""The core array: ``rows x cols`` cores and routers of a hardware file, pieces from a resident Program.

Router ``(x, y)`` sits beside core ``(x, y)``: its local output feeds the core's event FIFO, the
core's encoder feeds its local input, east/west and south/north ports join neighbours (``y``
grows southwards), and the host drives router ``(0, 0)``'s west input (section 5), which the array
opens in phase I only (the host may offer a step's first flit before its phase I starts). The
:class:`~spikeforge.rtl.sequencer.Sequencer` runs the steps after ``go``: it gives every core
``step``, ``start``, ``pphase`` and ``fire``, and the array shows ``step``, ``phase``, ``running``
and ``finished``. ``i_done`` is phase I's end (section 4.1): every core done, every router buffer
empty, no encoder holding a flit and, in phase I, the host finished (``host_done``); ``f_done`` is
every core done with phase F; ``done`` (the barrier unit) rises ``barrier_cycles`` after the
phase's done condition holds, ending the phase's barrier (section 4), and the sequencer starts the
next phase in that cycle. After the last step the host reads the output accumulators (section 5):
``rd_core``, ``rd_addr`` in one cycle, that core's membrane word on ``rd_data`` in the next. The
debug ports select one core (``dbg_core``).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig, Program
from spikeforge.mapping.hardware import index_bits

from .barrier import BarrierUnit
from .core import CYCLE_BITS, STEP_BITS, Core, hist_bits, out_flit_layout
from .piece import PieceInit, check_hardware, empty_piece, piece_init
from .rounds_plan import RoundsPlan, rounds_plan
from .router import Router
from .sequencer import PH_F, PH_I, Sequencer
from .swap import DmaEngine, SwapCore, SwapPlan, swap_plan

__all__ = ["CoreArray", "array_inits"]


def array_inits(program: Program) -> dict[int, PieceInit] | SwapPlan | RoundsPlan:
    """The piece of every core of a resident program (idle cores are left out); for a ``swap``
    program, its :class:`~spikeforge.rtl.swap.SwapPlan` (pieces loaded from DRAM at run time); for a
    ``rounds`` program, its :class:`~spikeforge.rtl.rounds.RoundsPlan` (built by
    :class:`~spikeforge.rtl.rounds.RoundsArray`, not :class:`CoreArray`)."""
    if program.plan.mode == "swap":
        return swap_plan(program)
    if program.plan.mode == "rounds":
        return rounds_plan(program)
    return {int(program.plan.core[p.id]): piece_init(program, p.id) for p in program.pieces}


class CoreArray(wiring.Component):
    """``rows x cols`` :class:`~spikeforge.rtl.core.Core` + :class:`~spikeforge.rtl.router.Router` pairs.

    Parameters
    ----------
    hw : HardwareConfig
        The hardware file's description.
    inits : dict of int to PieceInit
        The piece of each core index ``y * cols + x`` (missing: idle core).
    steps : int
        The steps of an inference (the program's ``graph.total_steps``).
    readout_fault : bool
        Test hook: the read-out addresses the word after the one asked for (a wrong accumulator).
    extra_barrier_cycles : int
        Test hook: the barrier unit waits this many cycles more than ``barrier_cycles``.
    dram_flip : (int, int), optional
        Test hook (swap mode): flips bit ``b`` of DRAM record ``r``.
    skip_p, late_phase : bool, int
        Test hooks of the :class:`~spikeforge.rtl.sequencer.Sequencer` (``skip_p``, ``late``).

    With a :class:`~spikeforge.rtl.swap.SwapPlan` for ``inits`` (a ``swap`` program) the cores that
    hold pieces are :class:`~spikeforge.rtl.swap.SwapCore` positions, empty at reset and loaded at run
    time by the :class:`~spikeforge.rtl.swap.DmaEngine` from ``go`` on; the sequencer starts a step
    only when its pieces are loaded (``phase`` is ``PH_LOAD`` until then: the step's DRAM stall).
    """

    def __init__(
        self,
        hw: HardwareConfig,
        inits: dict[int, PieceInit] | SwapPlan | None = None,
        *,
        steps: int,
        readout_fault: bool = False,
        extra_barrier_cycles: int = 0,
        dram_flip: tuple[int, int] | None = None,
        skip_p: bool = False,
        late_phase: int = 0,
    ) -> None:
        check_hardware(hw)
        self.hw = hw
        self.sequencer = Sequencer(steps, skip_p=skip_p, late=late_phase)
        self.readout_fault = bool(readout_fault)
        self.extra_barrier_cycles = int(extra_barrier_cycles)
        self.swap = inits if isinstance(inits, SwapPlan) else None
        self.dram_flip = dram_flip
        self.inits = {} if self.swap is not None else dict(inits or {})
        c = hw.core
        n = hw.array.cores
        super().__init__(
            {
                "host": In(stream.Signature(out_flit_layout(hw))),
                "host_done": In(1),  # the host sent every flit of the step (read in phase I)
                "go": In(1),  # start an inference: the sequencer runs its steps
                "step": Out(STEP_BITS),
                "phase": Out(3),  # the sequencer's PH_* code of this cycle
                "running": Out(1),
                "finished": Out(1),
                "i_done": Out(1),
                "f_done": Out(1),
                "done": Out(1),  # the phase's barrier is over: barrier_cycles after i_done / f_done rose
                "dbg_core": In(index_bits(n)),
                "dbg_maddr": In(index_bits(c.neurons // c.lanes)),
                "dbg_v": Out(c.lanes * c.v_bits),
                "dbg_haddr": In(index_bits(c.spike_history_steps)),
                "dbg_h": Out(c.neurons * hist_bits(hw)),
                # a core's running payload sums, max-pool counts and MBE shift words (Core.dbg_saddr)
                "dbg_saddr": In(16),
                "dbg_s": Out(c.lanes * c.v_bits),
                "dbg_busy": Out(CYCLE_BITS),
                "dbg_sent": Out(CYCLE_BITS),
                # every core's output packets as its router takes them (the benches' packet monitor):
                # bit k set when core k's encoder put a flit into its router this cycle, that flit at
                # word k of dbg_flits (out_flit_layout, core 0 low)
                "dbg_taken": Out(n),
                "dbg_flits": Out(n * out_flit_layout(hw).size),
                "rd_core": In(index_bits(n)),
                "rd_addr": In(index_bits(c.neurons // c.lanes)),
                "rd_data": Out(c.lanes * c.v_bits),
            }
        )

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        rows, cols = hw.array.rows, hw.array.cols
        cores, routers = {}, {}
        m.submodules.sequencer = seq = self.sequencer
        m.d.comb += [
            seq.go.eq(self.go),
            self.step.eq(seq.step),
            self.phase.eq(seq.phase),
            self.running.eq(seq.running),
            self.finished.eq(seq.finished),
        ]
        for y in range(rows):
            for x in range(cols):
                k = y * cols + x
                if self.swap is not None and k in self.swap.contexts:
                    core = SwapCore(
                        hw, self.swap.contexts[k], self.swap.data_bits, self.swap.addr_bits, self.swap.ports
                    )
                else:
                    core = Core(hw, self.inits.get(k, empty_piece(hw)))
                router = Router(hw, x, y)
                m.submodules[f"core_x{x}_y{y}"] = cores[k] = core
                m.submodules[f"router_x{x}_y{y}"] = routers[k] = router
                wiring.connect(m, router.out_l, core.events)
                wiring.connect(m, core.flits, router.in_l)
                w = len(core.flits.payload.as_value())
                m.d.comb += [
                    self.dbg_taken[k].eq(core.flits.valid & core.flits.ready),
                    self.dbg_flits[k * w : (k + 1) * w].eq(core.flits.payload.as_value()),
                ]
                m.d.comb += router.start.eq(seq.start)
                m.d.comb += [
                    core.step.eq(seq.step),
                    core.start.eq(seq.start),
                    core.pphase.eq(seq.pphase),
                    core.fire.eq(seq.fire),
                ]
        for y in range(rows):
            for x in range(cols):
                r = routers[y * cols + x]
                if x + 1 < cols:
                    wiring.connect(m, r.out_e, routers[y * cols + x + 1].in_w)
                    wiring.connect(m, routers[y * cols + x + 1].out_w, r.in_e)
                if y + 1 < rows:
                    wiring.connect(m, r.out_s, routers[(y + 1) * cols + x].in_n)
                    wiring.connect(m, routers[(y + 1) * cols + x].out_n, r.in_s)
        # the host's port is open in phase I only: a flit offered early waits for the step's phase I
        in_i = seq.phase == PH_I
        m.d.comb += [
            routers[0].in_w.payload.eq(self.host.payload),
            routers[0].in_w.valid.eq(self.host.valid & in_i),
            self.host.ready.eq(routers[0].in_w.ready & in_i),
        ]
        # ports at the edge of the mesh: nothing arrives, nothing is routed out (XY never points off the mesh)
        for y in range(rows):
            for x in range(cols):
                r = routers[y * cols + x]
                edges = [("e", x + 1 >= cols), ("s", y + 1 >= rows), ("n", y == 0), ("w", x == 0 and y > 0)]
                for p, open_ in edges:
                    if open_:
                        m.d.comb += getattr(r, f"in_{p}").valid.eq(0)
                if x == 0:
                    m.d.comb += r.out_w.ready.eq(0)
                if x + 1 >= cols:
                    m.d.comb += r.out_e.ready.eq(0)
                if y == 0:
                    m.d.comb += r.out_n.ready.eq(0)
                if y + 1 >= rows:
                    m.d.comb += r.out_s.ready.eq(0)
        all_i, all_f = Signal(), Signal()
        terms_i = [self.host_done | ~in_i]  # phase P has no host flits (the host may be offering the next step's)
        terms_f = []
        plive = Const(0)
        for k in cores:
            terms_i += [cores[k].i_done, routers[k].empty, ~cores[k].flits.valid]
            terms_f.append(cores[k].f_done)
            plive = plive | cores[k].plive
        acc_i = terms_i[0]
        for t in terms_i[1:]:
            acc_i = acc_i & t
        acc_f = terms_f[0]
        for t in terms_f[1:]:
            acc_f = acc_f & t
        m.d.comb += [all_i.eq(acc_i), all_f.eq(acc_f), self.i_done.eq(all_i), self.f_done.eq(all_f)]
        # the barrier unit (section 4): `done` rises barrier_cycles after the phase's done condition
        # (phase I and P: i_done; phase F: f_done) holds; the sequencer starts the next phase then
        bar = hw.barrier_cycles + self.extra_barrier_cycles
        m.submodules.barrier = barrier = BarrierUnit(bar)
        m.d.comb += [
            barrier.cond.eq(Mux(seq.phase == PH_F, all_f, all_i)),
            barrier.restart.eq(seq.restart),  # a phase starts at 0
            self.done.eq(barrier.done),
            seq.done.eq(barrier.done),
            seq.plive.eq(plive),
        ]
        # swap mode (section 7): the DMA engine loads each core's pieces; a step waits until they are loaded
        if self.swap is None:
            m.d.comb += seq.ready.eq(1)
        else:
            m.submodules.dma = dma = DmaEngine(hw, self.swap, flip=self.dram_flip)
            nxt = Signal(STEP_BITS)  # the next step to run: one after the step last fired
            with m.If(seq.fire):
                m.d.sync += nxt.eq(seq.step + 1)
            m.d.comb += [
                dma.launch.eq(seq.launch),
                dma.step_end.eq(seq.step_end),
                dma.nxt.eq(nxt),
                seq.ready.eq(dma.ready),
            ]
            for k in self.swap.contexts:
                core = cores[k]
                m.d.comb += [
                    core.active.eq(getattr(dma, f"active_{k}")),
                    core.ld_en.eq(getattr(dma, f"ld_en_{k}")),
                    core.ld_sel.eq(dma.ld_sel),
                    core.ld_addr.eq(dma.ld_addr),
                    core.ld_data.eq(dma.ld_data),
                ]
        # the host's read-out (section 5): rd_addr goes to every core, rd_data is the word of the
        # core named by rd_core in the cycle before (the cores' read ports are synchronous)
        rd_sel = Signal.like(self.rd_core)
        m.d.sync += rd_sel.eq(self.rd_core)
        for k, core in cores.items():
            m.d.comb += core.rd_addr.eq(self.rd_addr + int(self.readout_fault))
            with m.If(rd_sel == k):
                m.d.comb += self.rd_data.eq(core.rd_data)
        for k, core in cores.items():
            m.d.comb += [
                core.dbg_maddr.eq(self.dbg_maddr),
                core.dbg_haddr.eq(self.dbg_haddr),
                core.dbg_saddr.eq(self.dbg_saddr),
            ]
            with m.If(self.dbg_core == k):
                m.d.comb += [
                    self.dbg_v.eq(core.dbg_v),
                    self.dbg_h.eq(core.dbg_h),
                    self.dbg_s.eq(core.dbg_s),
                    self.dbg_busy.eq(core.busy),
                    self.dbg_sent.eq(core.sent),
                ]
        return m
