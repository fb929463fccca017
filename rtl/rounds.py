"""``rounds`` mode in the RTL (``docs/architecture.md`` section 7): every core runs its pieces in turn.

A program in ``rounds`` mode has more pieces live at once than the array has cores. At every step
each core position runs the rounds of its timeline (``Program.plan.timeline``) whose piece is in
its round window (``Program.round_steps``), one after another, through one DRAM channel:

1. *load* (``b_in`` bytes of ``Program.round_traffic``): the DMA engine walks the round's
   descriptors, ``RoundsPlan.ports`` per cycle from the grant: the piece's register values (into its
   context's registers, ``Core(..., cfg_ports=ports)``), the synapse words the piece uses, its
   parameter words, an ``mbe`` piece's table words (section 4.5), its state (membranes, a max-pool's window
   maxima, an ``mbe`` piece's ``X`` and basis blocks, as written back at its last round, ``v0``
   before the first; a product's or a spiking max-pool's running-count words after them, into the
   synapse SRAM where the core keeps them, or a graded product's or max-pool's running payload
   sums, into the sums memory; an ``mbe`` piece's shift words) and, per slot whose source emitted
   in its window at ``t - 1 - delay``, the words of the source's rows (spike bits, or ``v_bits``
   payloads of MBE units and graded max-pools, from the DRAM rows the source's pieces wrote back at
   that step) or of the host's input values (written by the host before the run) that hold the
   slot's sources. They go into the core's memories and into the core's *feeder*: one pending bit
   (and, for payload and host words, one value) per source the slot needs;
2. *integrate*: from the cycle before the transfer ends, the feeder hands the core's event FIFO one
   event per cycle (the lowest pending position: its slot, global source index, and a payload or
   host value as a graded payload), so the core (:class:`~spikeforge.rtl.core.Core`, one context per
   piece structure on shared memories as in :mod:`~spikeforge.rtl.swap`, its registers written by
   the load) pops them back to back from the
   cycle the transfer ends; its ``i_done`` (``pipeline_cycles`` after the last event) starts
   phase F in the same cycle, and its ``f_done`` (its phase-F cycles later: ``ceil(n/lanes)``, an
   ``mbe`` piece's passes, a graded max-pool's ``kernel**2`` per group) makes the write-back
   request. A slice split into partial chunks runs 1. and 2. for its root, then for each chunk
   whose window holds the step (piece order; each load one request, made in the cycle the previous
   piece's ``i_done`` rises); a chunk's context adds its events into the root's accumulators (the
   shared membrane SRAM), and after the last piece the root's context fires;
3. *write back* (``b_out`` bytes; a split slice's pieces' together): one cycle after the grant,
   ``RoundsPlan.ports`` words per cycle, the membrane words, the count or payload-sum words, the shift words and
   (for a neuron, product, max-pool or ``mbe`` piece) its row of step ``t`` (``n`` spike bits or
   ``v_bits`` payloads, zero when it did not emit at ``t``) into the DRAM.

The channel serves one transfer of ``b`` bytes at a time, ``dram_latency_cycles + ceil(b /
dram_bytes_per_cycle)`` cycles, requests in the order they are made (simultaneous ones: lower core
first). The step ends when every core's last write-back has ended; ``done`` rises
``barrier_cycles`` later. No flit crosses a router and no encoder runs. The DRAM's contents are
the state at each barrier (section 8): the bench reads them through ``dbg_daddr``/``dbg_ddata``.
The rounds, their descriptors and the DRAM's words are planned in :mod:`~spikeforge.rtl.rounds_plan`
(its names are re-exported here).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES

from .barrier import BarrierUnit
from .bits import lowest_set
from .core import (
    CYCLE_BITS,
    SHIFT_BITS,
    STEP_BITS,
    TYPE_GRADED,
    TYPE_SPIKE,
    Core,
    hist_bits,
)
from .memories import operand_word_bits
from .piece import REGISTER_BITS, check_hardware
from .rounds_plan import (
    SEL_FIELD_BITS,
    SEL_HOST,
    SEL_LUT,
    SEL_MEMBRANE,
    SEL_OPS,
    SEL_PARAMS,
    SEL_REGS,
    SEL_SHIFT,
    SEL_SPIKES,
    SEL_SUMS,
    SEL_SYNAPSE,
    RoundsPlan,
    RoundUnit,
    rounds_plan,
)
from .sequencer import Sequencer
from .swap import context_families
from .tables import FieldTable

__all__ = [
    "RoundsPlan",
    "RoundUnit",
    "rounds_plan",
    "RoundsArray",
    "SEL_SYNAPSE",
    "SEL_PARAMS",
    "SEL_MEMBRANE",
    "SEL_SPIKES",
    "SEL_HOST",
    "SEL_SUMS",
    "SEL_LUT",
    "SEL_SHIFT",
    "SEL_REGS",
    "SEL_OPS",
    "SEL_FIELD_BITS",
]


class RoundsArray(wiring.Component):
    """The rounds-mode array: per core position one :class:`~spikeforge.rtl.core.Core` context per
    piece structure of its timeline (``RoundUnit.context``) on shared memories, its registers written
    by each round's load, one feeder per core position, and the DMA engine with the DRAM.

    Ports: ``go`` (run the inference: the :class:`~spikeforge.rtl.sequencer.Sequencer` starts step 0
    in this cycle and each next step in the cycle ``done`` rises), ``step``, ``phase`` (``PH_ROUNDS``
    while a step runs), ``running``, ``finished``, ``done`` (the last write-back of the step ended
    ``barrier_cycles`` ago; the next step's cycle 0), the host's DRAM write port (``hw_en``,
    ``hw_addr``, ``hw_data``: the input words, before the run), the DRAM read port of the bench
    (``dbg_daddr`` -> ``dbg_ddata``, combinational) and the busy cycles of the step of core
    ``dbg_core`` (``dbg_busy``: cycles its rounds integrate and fire, ``pipeline_cycles`` included,
    as the simulator counts them in rounds mode).

    ``dram_flip = (word, bit)`` (test hook) flips a bit of the DRAM's initial contents;
    ``wb_flip = (piece, bit)`` or ``(piece, bit, word)`` flips a bit of the word (default 0, the
    first membrane word; then the running-count or payload-sum words, the shift words, then the row)
    the piece writes back at every round; ``late_phase`` (test hook) starts each step that many
    cycles after ``done`` rises.
    """

    def __init__(
        self,
        hw: HardwareConfig,
        plan: RoundsPlan,
        *,
        dram_flip: tuple[int, int] | None = None,
        wb_flip: tuple[int, ...] | None = None,
        late_phase: int = 0,
    ) -> None:
        check_hardware(hw)
        self.hw, self.plan = hw, plan
        self.dram_flip, self.wb_flip = dram_flip, wb_flip
        self.sequencer = Sequencer(plan.steps, rounds=True, late=late_phase)
        depth = max(1, len(plan.dram))
        super().__init__(
            {
                "go": In(1),
                "step": Out(STEP_BITS),
                "phase": Out(3),
                "running": Out(1),
                "finished": Out(1),
                "done": Out(1),
                "hw_en": In(1),
                "hw_addr": In(range(depth)),
                "hw_data": In(plan.width),
                "dbg_daddr": In(range(depth)),
                "dbg_ddata": Out(plan.width),
                "dbg_core": In(index_bits(hw.array.cores)),
                "dbg_busy": Out(CYCLE_BITS),
            }
        )

    def elaborate(self, platform):
        m = Module()
        hw, plan = self.hw, self.plan
        c = hw.core
        lanes, vb, wb = c.lanes, c.v_bits, c.weight_bits
        gmax = c.neurons // lanes
        syn_words = max(1, c.axons * c.neurons // lanes)
        width = plan.width
        words = list(plan.dram) or [0]
        if self.dram_flip is not None:
            words[self.dram_flip[0]] ^= 1 << self.dram_flip[1]
        m.submodules.dram = dram = Memory(shape=unsigned(width), depth=len(words), init=words)
        # the feeders' neuron table: the global source index of every bit of a source's words
        # (RoundsPlan.neurons), one read port per core's feeder
        nwords = list(plan.neurons) or [0]
        m.submodules.neuron_table = self.neuron_table = Memory(shape=unsigned(24), depth=len(nwords), init=nwords)
        R = plan.ports  # descriptors (loads) and words (write-backs) per cycle
        d_rds = [dram.read_port(domain="comb") for _ in range(R)]  # the channel's reads (a load's descriptors)
        d_wrs = [dram.write_port() for _ in range(R)]  # write-backs
        h_wr = dram.write_port()  # the host's input words, before the run
        d_dbg = dram.read_port(domain="comb")
        m.d.comb += [h_wr.addr.eq(self.hw_addr), h_wr.data.eq(self.hw_data), h_wr.en.eq(self.hw_en)]
        m.d.comb += [d_dbg.addr.eq(self.dbg_daddr), self.dbg_ddata.eq(d_dbg.data)]

        cores = sorted(plan.units)
        ncores = len(cores)
        m.submodules.sequencer = seq = self.sequencer
        start, step = seq.start, seq.step  # step `step`'s rounds run from its cycle 0 (`start`)
        m.d.comb += [
            seq.go.eq(self.go),
            seq.ready.eq(1),
            seq.plive.eq(0),  # partial sums move through DRAM: no phase P
            self.step.eq(seq.step),
            self.phase.eq(seq.phase),
            self.running.eq(seq.running),
            self.finished.eq(seq.finished),
        ]
        # the step's cycle counter: requests are stamped with the cycle they are made
        cyc = Signal(CYCLE_BITS)
        now = Signal(CYCLE_BITS)
        m.d.comb += now.eq(Mux(start, 0, cyc))
        m.d.sync += cyc.eq(now + 1)

        # the descriptor ROM: every round's load descriptors, concatenated
        descs = [d for k in cores for u in plan.units[k] for d in u.load] or [(0, 0, 0, 0, 0, 0)]
        descs += [(0, 0, 0, 0, 0, 0)] * (R - 1)  # read (never used) when a load's last cycle has fewer than R
        abits = index_bits(len(words))
        nchunk = max([len(u.chunks) for k in cores for u in plan.units[k]] + [1])
        # table targets: an mbe piece's table words, a product's operand table words
        nlut = max([max(u.n_lut, u.n_ops) for k in cores for u in plan.units[k]] + [1])
        nregs = max([d[1] + 1 for k in cores for u in plan.units[k] for d in u.load if d[0] == SEL_REGS] + [1])
        tbits = max(index_bits(syn_words), index_bits(nchunk), index_bits(nlut), index_bits(gmax), index_bits(nregs))
        fields = [SEL_FIELD_BITS, tbits, abits, STEP_BITS, STEP_BITS, STEP_BITS]
        def_w = sum(fields)

        def pack(d):
            w, sh = 0, 0
            for v, f in zip(d, fields):
                w |= int(v) << sh
                sh += f
            return w

        m.submodules.desc = drom = Memory(shape=unsigned(def_w), depth=len(descs), init=[pack(d) for d in descs])
        dscs = [drom.read_port(domain="comb") for _ in range(R)]
        first_desc, at = {}, 0
        for k in cores:
            for j, u in enumerate(plan.units[k]):
                first_desc[k, j] = at
                at += len(u.load)

        # ---- the channel
        busy = Signal()
        who = Signal(range(max(2, ncores)))
        is_wb = Signal()  # the transfer under way is a write-back
        maxdur = max(
            [u.load_cycles for k in cores for u in plan.units[k]]
            + [u.wb_cycles for k in cores for u in plan.units[k]]
            + [1]
        )
        rem = Signal(range(maxdur + 1))
        rem_now = Signal.like(rem)
        m.d.comb += rem_now.eq(rem - 1)
        finishing = Signal()
        m.d.comb += finishing.eq(busy & (rem_now == 0))
        free = ~busy | finishing

        # ---- per core: its rounds' windows, state and requests
        ST_DONE, ST_REQ_LOAD, ST_LOAD, ST_RUN_I, ST_RUN_F, ST_REQ_WB, ST_WB = range(7)
        core_state = {}
        req, stamp_now, req_wb, req_unit = [], [], [], []
        idle_terms = []
        busy_count = {}
        for i, k in enumerate(cores):
            units = plan.units[k]
            nu = len(units)
            st = Signal(range(7), name=f"st_{k}", init=ST_DONE)
            u = Signal(range(max(2, nu)), name=f"u_{k}")
            stamp = Signal(CYCLE_BITS, name=f"stamp_{k}")
            # the rounds of each step: the units whose window holds it, in unit order (a slice's root,
            # then its active chunks), a memory initialised from the plan; `pos` is the place in the
            # step's list of the last unit loaded
            sched, sstep = [], []
            for todo in plan.schedule(k):
                sstep.append(len(sched) | len(todo) << 16)
                sched += todo
            m.submodules[f"sched{k}"] = smem = Memory(shape=range(max(2, nu)), depth=max(1, len(sched)), init=sched)
            m.submodules[f"steps{k}"] = tmem = Memory(shape=unsigned(32), depth=len(sstep), init=sstep)
            t_rd = tmem.read_port(domain="comb")
            m.d.comb += t_rd.addr.eq(step)
            s_base, s_len = t_rd.data[:16], t_rd.data[16:]
            pos = Signal(16, name=f"pos_{k}")
            first_rd, next_rd = smem.read_port(domain="comb"), smem.read_port(domain="comb")
            m.d.comb += [first_rd.addr.eq(s_base), next_rd.addr.eq(s_base + pos + 1)]
            first_u, has_first = first_rd.data, s_len > 0
            # the round table: what the array's control needs of each unit, a memory initialised from
            # the plan, read at the running unit, the requested one, the loading one and the slice's root
            utab = self._unit_table(m, k, units, first_desc)
            uu = utab.read(m, u)
            root_now = Signal.like(u, name=f"root_{k}")
            m.d.comb += root_now.eq(uu["root"])
            # the next unit of the step's list: after an integration, a chunk of the same slice (the
            # list is in unit order, a slice's chunks after its root); after a write-back, the next slice
            nxt = utab.read(m, next_rd.data)
            has_next = pos + 1 < s_len
            after_u, has_after = next_rd.data, has_next
            chunk_u, has_chunk = next_rd.data, has_next & nxt["chunk"]
            mine = busy & (who == i)
            ld_finish = finishing & (who == i) & ~is_wb
            wb_finish = finishing & (who == i) & is_wb
            pre = mine & ~is_wb & (rem_now == 1)  # the cycle before the load ends: the feeder starts
            # the piece's context: start when its load ends, fire when phase I is done, write back when F is
            ctx_i_done = Signal(name=f"ctx_i_done_{k}")
            ctx_f_done = Signal(name=f"ctx_f_done_{k}")
            i_now = Signal(name=f"i_now_{k}")
            i_end = Signal(name=f"i_end_{k}")  # the piece's integration is done: load the next chunk, or fire
            chunk_now = Signal(name=f"chunk_now_{k}")
            fire_now = Signal(name=f"fire_now_{k}")
            f_now = Signal(name=f"f_now_{k}")
            wb_new = Signal(name=f"wb_new_{k}")
            ld_new = Signal(name=f"ld_new_{k}")
            m.d.comb += [
                i_now.eq(ld_finish | (st == ST_RUN_I)),
                i_end.eq(i_now & ctx_i_done),
                chunk_now.eq(i_end & has_chunk),
                fire_now.eq(i_end & ~has_chunk),
                f_now.eq(fire_now | (st == ST_RUN_F)),
                wb_new.eq(f_now & ctx_f_done),
                ld_new.eq(Mux(start, has_first, (wb_finish & has_after) | chunk_now)),
            ]
            r = Signal(name=f"req_{k}")
            rw = Signal(name=f"req_wb_{k}")
            ru = Signal.like(u, name=f"req_unit_{k}")
            rs = Signal(CYCLE_BITS, name=f"req_stamp_{k}")
            waiting = (st == ST_REQ_LOAD) | (st == ST_REQ_WB)
            m.d.comb += [
                r.eq((waiting & ~start) | ld_new | wb_new),
                rw.eq(Mux(waiting & ~start, st == ST_REQ_WB, wb_new)),
                # a load: the first round, the next chunk or the next slice; a write-back: the slice's root
                ru.eq(Mux(ld_new, Mux(start, first_u, Mux(chunk_now, chunk_u, after_u)), Mux(wb_new, root_now, u))),
                rs.eq(Mux(waiting & ~start, stamp, now)),
            ]
            req.append(r)
            req_wb.append(rw)
            req_unit.append(ru)
            stamp_now.append(rs)
            core_state[k] = dict(
                st=st,
                u=u,
                pos=pos,
                utab=utab,
                uu=uu,
                stamp=stamp,
                ld_finish=ld_finish,
                wb_finish=wb_finish,
                pre=pre,
                i_now=i_now,
                i_end=i_end,
                root_now=root_now,
                fire_now=fire_now,
                f_now=f_now,
                wb_new=wb_new,
                ld_new=ld_new,
                has_after=has_after,
                ctx_i_done=ctx_i_done,
                ctx_f_done=ctx_f_done,
            )
            idle_terms.append(Mux(start, ~has_first, ((st == ST_DONE) & ~ld_new) | (wb_finish & ~has_after)))
            bc = Signal(CYCLE_BITS, name=f"busy_{k}")
            # a chunk's integration ends in the cycle its successor's load is requested: not counted
            m.d.sync += bc.eq(Mux(start, 0, bc) + ((i_now | f_now) & ~wb_new & ~chunk_now))
            busy_count[k] = bc

        # ---- the arbiter: the oldest request, then the lowest core
        wins = []
        for i in range(ncores):
            w = req[i]
            for q in range(ncores):
                if q != i:
                    before = (stamp_now[i] < stamp_now[q]) | ((stamp_now[i] == stamp_now[q]) & Const(int(i < q)))
                    w = w & (~req[q] | before)
            win = Signal(name=f"win_{cores[i]}")
            m.d.comb += win.eq(w)
            wins.append(win)
        grant = Signal()
        m.d.comb += grant.eq(free & Cat(*wins).any() if wins else 0)
        g_dur = Signal.like(rem)
        g_n = Signal(range(len(descs) + max([u.n_wb for k in cores for u in plan.units[k]] + [0]) + 2))
        g_first = Signal(range(len(descs) + 1))
        for i, k in enumerate(cores):
            gr = core_state[k]["utab"].read(m, req_unit[i])  # the requested round's transfer
            with m.If(wins[i]):
                m.d.comb += [
                    g_dur.eq(Mux(req_wb[i], gr["wb_dur"], gr["ld_dur"])),
                    g_n.eq(Mux(req_wb[i], gr["wb_n"], gr["ld_n"])),
                    g_first.eq(gr["first"]),
                ]
        g_who = Signal.like(who)
        g_wb = Signal()
        for i in range(ncores):
            with m.If(wins[i]):
                m.d.comb += [g_who.eq(i), g_wb.eq(req_wb[i])]
        # per core state updates
        for i, k in enumerate(cores):
            s = core_state[k]
            st = s["st"]
            granted = grant & wins[i]
            with m.If(s["ld_new"]):  # the place in the step's list of the unit whose load is requested
                m.d.sync += s["pos"].eq(Mux(start, 0, s["pos"] + 1))
            with m.If(granted):
                m.d.sync += [st.eq(Mux(req_wb[i], ST_WB, ST_LOAD)), s["u"].eq(req_unit[i])]
            with m.Elif(req[i]):
                m.d.sync += [st.eq(Mux(req_wb[i], ST_REQ_WB, ST_REQ_LOAD)), s["u"].eq(req_unit[i])]
                m.d.sync += s["stamp"].eq(stamp_now[i])
            with m.Elif(s["f_now"]):
                m.d.sync += st.eq(ST_RUN_F)
            with m.Elif(s["i_now"]):
                m.d.sync += st.eq(ST_RUN_I)
            with m.Elif(s["wb_finish"] | start):
                m.d.sync += st.eq(ST_DONE)
        # the channel's transfer: descriptors (loads) or write-back words, R per cycle
        idx = Signal.like(g_n)  # next record of the transfer
        n_rec = Signal.like(g_n)
        first_r = Signal.like(g_first)
        wb_i = Signal.like(g_n)  # write-backs: the word written this cycle (one cycle after the grant)
        wb_on = Signal()
        with m.If(grant):
            m.d.sync += [busy.eq(1), who.eq(g_who), is_wb.eq(g_wb), rem.eq(g_dur), first_r.eq(g_first), n_rec.eq(g_n)]
            m.d.sync += [idx.eq(Mux(g_wb, 0, R)), wb_on.eq(g_wb & (g_n > 0)), wb_i.eq(0)]
        with m.Else():
            with m.If(finishing):
                m.d.sync += busy.eq(0)
            with m.Elif(busy):
                m.d.sync += rem.eq(rem_now)
            with m.If(busy & ~is_wb & (idx < n_rec)):
                m.d.sync += idx.eq(idx + R)
            with m.If(wb_on):
                m.d.sync += [wb_i.eq(wb_i + R), wb_on.eq(wb_i + R < n_rec)]
        # the load records of this cycle: the grant's first R, then R per cycle; record q of the
        # cycle is (sel, tgt, delay, en, data) in lds[q]
        ld_who = Mux(grant, g_who, who)
        lds = []
        for q, (dsc, d_rd) in enumerate(zip(dscs, d_rds)):
            ld_valid = Signal(name=f"ld_valid_{q}")
            m.d.comb += ld_valid.eq(Mux(grant, ~g_wb & (g_n > q), busy & ~is_wb & (idx + q < n_rec)))
            m.d.comb += dsc.addr.eq(Mux(grant, g_first, first_r + idx) + q)
            parts, off = [], 0
            for f in fields:
                parts.append(dsc.data[off : off + f])
                off += f
            sel, tgt, base, delay, wlo, whi = parts
            src_step = Signal(STEP_BITS + 1, name=f"src_step_{q}")
            m.d.comb += src_step.eq(step - 1 - delay)
            spk = sel == SEL_SPIKES
            gated = (sel == SEL_SPIKES) | (sel == SEL_HOST)
            in_win = (step >= delay + 1) & (src_step >= wlo) & (src_step < whi)
            ring_row = src_step[: plan.ring_shift]  # (t - 1 - delay) mod 2^ring_shift: the ring's row
            m.d.comb += d_rd.addr.eq(base + Mux(spk, ring_row << plan.spike_shift, 0))
            ld_en = Signal(name=f"ld_en_{q}")
            m.d.comb += ld_en.eq(ld_valid & (~gated | in_win))
            lds.append({"sel": sel, "tgt": tgt, "delay": delay, "en": ld_en, "data": d_rd.data})

        # ---- each core position: shared memories, one context per piece structure, one feeder
        sbits = lanes * wb
        for i, k in enumerate(cores):
            s = core_state[k]
            units = plan.units[k]
            # membrane organisations its pieces use: lane banks and whole words (both when it holds both)
            orgs = {x.banked for x in units}
            shared = {
                "syn": Memory(shape=unsigned(sbits), depth=syn_words, init=[]),
                "par": Memory(shape=unsigned(lanes * 2 * vb), depth=gmax, init=[]),
                "hist": Memory(shape=unsigned(c.neurons * hist_bits(hw)), depth=c.spike_history_steps, init=[]),
            }
            # one history of hist_bits per unit serves spike rows and payload rows alike (the write-back
            # reads it masked to the piece's row bits); a Core context names the payload rows' `hist_g`
            shared["hist_g"] = shared["hist"]
            if True in orgs:
                shared["banks"] = [Memory(shape=unsigned(vb), depth=gmax, init=[]) for _ in range(lanes)]
            if False in orgs:
                shared["mem"] = Memory(shape=unsigned(lanes * vb), depth=gmax, init=[])
            # running payload sums in words of `lanes` v_bits sums: the synapse SRAM's bits, a memory of
            # that width beside the weight words (a departure from section 3 in area only, as for the banks)
            nsums = max([x.n_count for x in units if x.graded_sums] + [0])
            if nsums:
                shared["sums"] = Memory(shape=unsigned(lanes * vb), depth=nsums, init=[])
            # an mbe piece's table words (loaded as its image) and its shift words (loaded as state)
            if any(x.n_lut for x in units):
                shared["lut"] = Memory(shape=unsigned(3 * vb), depth=max(x.n_lut for x in units), init=[])
            if any(x.n_ops for x in units):  # a product's operand index tables (section 4.3)
                depth = max(x.n_ops for x in units)
                shared["operands"] = Memory(shape=unsigned(operand_word_bits(hw)), depth=depth, init=[])
            if any(x.n_shift for x in units):
                shared["shift"] = Memory(shape=unsigned(lanes * SHIFT_BITS), depth=gmax, init=[])
            # one context per piece structure (RoundUnit.context), built from its first round's piece;
            # each round's load rewrites its registers (only the running round's context is used)
            families = context_families([x.init for x in units])  # numbered as RoundUnit.context
            assert all(any(q is x.init for q in families[x.context]) for x in units)
            ctxs = [Core(hw, f[0], shared=shared, cfg_ports=R, family=f, encoder=False) for f in families]
            for j, ctx in enumerate(ctxs):
                m.submodules[f"core{k}_ctx{j}"] = ctx
            mine = [ld["en"] & (ld_who == i) for ld in lds]
            # the round the records of this cycle load: the grant cycle's are the new round's (u
            # changes a cycle later)
            ld_unit = Mux(grant & wins[i], req_unit[i], s["u"])
            lu = s["utab"].read(m, ld_unit)
            ld_ctx = lu["ctx"]
            for c_, ctx in enumerate(ctxs):
                en = [mine_ld & (ld["sel"] == SEL_REGS) & (ld_ctx == c_) for ld, mine_ld in zip(lds, mine)]
                m.d.comb += [
                    ctx.cfg_en.eq(Cat(*en)),
                    ctx.cfg_addr.eq(Cat(*[ld["tgt"][: ctx.reg_bits] for ld in lds])),
                    ctx.cfg_data.eq(Cat(*[ld["data"][:REGISTER_BITS] for ld in lds])),
                ]
            # a membrane word goes to every organisation (lane l of it to word `tgt` of bank l)
            mem_ports = [(shared["mem"], slice(0, lanes * vb))] if "mem" in shared else []
            mem_ports += [(b, slice(q * vb, (q + 1) * vb)) for q, b in enumerate(shared.get("banks", []))]
            # the loader: write ports for each record of the cycle (a round's records write distinct words)
            for ld, mine_ld in zip(lds, mine):
                self._loader_port(m, shared, mem_ports, ld, mine_ld)
            # the write-back's reads: a membrane word (of the piece's organisation), a count or sum word, a
            # shift word, a word of the step's history row
            uu = s["uu"]  # the running round's
            groups_now, counts_now, shifts_now = uu["n_mem"], uu["n_count"], uu["n_shift"]
            sums_now, banked_now = uu["sums"], uu["banked"]
            hist_rd = shared["hist"].read_port(domain="comb")
            m.d.comb += hist_rd.addr.eq(step % c.spike_history_steps)
            for name in ("syn", "par", "hist", "mem", "sums", "lut", "shift", "operands"):
                if name in shared:
                    m.submodules[f"core{k}_{name}"] = shared[name]
            for q, bank in enumerate(shared.get("banks", [])):
                m.submodules[f"core{k}_bank{q}"] = bank
            # the steps a piece emits at: its firing window, a max-pool unit's input window (section 4.4)
            fired_now = uu["spikes"] & (step >= uu["emit"]) & (step < uu["emit"] + uu["T"])
            # the row's bits past the piece's n units (1 or v_bits each) may be another piece's: masked
            hbits = c.neurons * hist_bits(hw)
            nmask = Signal(hbits, name=f"nmask_{k}")
            m.d.comb += nmask.eq(Cat(*(uu["row_bits"] > b for b in range(hbits))))
            state_base, spike_base = uu["state_base"], uu["spike_base"]
            ring_now = step[: plan.ring_shift]  # the ring's row of this step
            # the write-back's words of this cycle: word wb_i + q on DRAM write port q
            for q, d_wr in enumerate(d_wrs):
                wi = Signal.like(wb_i, name=f"wb_i_{k}_{q}")
                m.d.comb += wi.eq(wb_i + q)
                mem_words = []
                for mm, _ in mem_ports:
                    r = mm.read_port(domain="comb")
                    m.d.comb += r.addr.eq(wi)
                    mem_words.append(r.data)
                whole = mem_words[0] if "mem" in shared else Const(0, lanes * vb)
                banked_word = Cat(*mem_words[1:] if "mem" in shared else mem_words) if "banks" in shared else whole
                mword_rd = Mux(banked_now, banked_word, whole)
                syn_rd = shared["syn"].read_port(domain="comb")
                m.d.comb += syn_rd.addr.eq(wi - groups_now)
                state_rd = syn_rd.data
                if "sums" in shared:
                    sums_rd = shared["sums"].read_port(domain="comb")
                    m.d.comb += sums_rd.addr.eq(wi - groups_now)
                    state_rd = Mux(sums_now, sums_rd.data, syn_rd.data)
                if "shift" in shared:
                    shift_rd = shared["shift"].read_port(domain="comb")
                    m.d.comb += shift_rd.addr.eq(wi - groups_now - counts_now)
                    state_rd = Mux(wi < groups_now + counts_now, state_rd, shift_rd.data)
                grp = Signal(range(2 * gmax + syn_words + 1), name=f"wb_grp_{k}_{q}")
                m.d.comb += grp.eq(wi - groups_now - counts_now - shifts_now)
                spike_word = Mux(fired_now, ((hist_rd.data & nmask) >> (grp * width))[:width], 0)
                with m.If(wb_on & (who == i) & (wi < n_rec)):
                    is_mem = wi < groups_now
                    is_state = wi < groups_now + counts_now + shifts_now
                    wword = Signal(width, name=f"wb_word_{k}_{q}")
                    m.d.comb += wword.eq(Mux(is_mem, mword_rd, Mux(is_state, state_rd, spike_word)))
                    if self.wb_flip is not None:
                        hits = [j for j, x in enumerate(units) if x.piece == self.wb_flip[0]]
                        if hits:
                            at = self.wb_flip[2] if len(self.wb_flip) > 2 else 0
                            flip = (s["u"] == hits[0]) & (wi == at)
                            wword = wword ^ Mux(flip, Const(1 << self.wb_flip[1], width), 0)
                    m.d.comb += [
                        d_wr.en.eq(1),
                        d_wr.addr.eq(
                            Mux(
                                is_state,
                                state_base + wi,
                                spike_base + (ring_now << plan.spike_shift) + grp,
                            )
                        ),
                        d_wr.data.eq(wword),
                    ]
            # contexts: the running round's starts, the slice root's fires (after its chunks)
            ctx_now = uu["ctx"]
            root_ctx = s["utab"].read(m, s["root_now"])["ctx"]
            for c_, ctx in enumerate(ctxs):
                m.d.comb += [
                    ctx.step.eq(step),
                    ctx.start.eq(s["ld_finish"] & (ctx_now == c_)),
                    ctx.fire.eq(s["fire_now"] & (root_ctx == c_)),
                    ctx.pphase.eq(0),
                    ctx.flits.ready.eq(0),  # no flit crosses the mesh in rounds mode
                ]
            # the feeder: the running round's sources, into its context's event port
            s["ld_cbase"] = lu["cbase"]
            self._feeder(
                m,
                k,
                units,
                ctxs,
                ctx_now,
                s,
                grant & wins[i] & ~g_wb,
                [(mine_ld, ld["sel"], ld["tgt"], ld["data"]) for ld, mine_ld in zip(lds, mine)],
            )
            m.d.comb += [
                s["ctx_i_done"].eq(Array(ctx.i_done for ctx in ctxs)[ctx_now]),
                s["ctx_f_done"].eq(Array(ctx.f_done for ctx in ctxs)[root_ctx]),
            ]

        # ---- the barrier: every core's last write-back ended, then barrier_cycles
        cond = Signal()
        acc = Const(1)
        for t_ in idle_terms:
            acc = acc & t_
        m.d.comb += cond.eq(acc)
        m.submodules.barrier = barrier = BarrierUnit(hw.barrier_cycles)
        m.d.comb += [
            barrier.cond.eq(cond),
            barrier.restart.eq(seq.restart),
            self.done.eq(barrier.done),
            seq.done.eq(barrier.done),  # the sequencer starts the next step in the cycle it rises
        ]
        for k in cores:
            with m.If(self.dbg_core == k):
                m.d.comb += self.dbg_busy.eq(busy_count[k])
        return m

    def _unit_table(self, m: Module, k: int, units: list, first_desc: dict) -> FieldTable:
        """Core ``k``'s round table (:class:`FieldTable`): per round, its slice's root and whether it
        is a chunk, its context, its transfers' cycles and words, its first descriptor, its state's
        words (membranes, counts or sums, shifts) and organisation, its DRAM bases, the steps it
        emits at, its row's bits and its first chunk table word."""
        emit = [x.init.in_start if x.init.kind == PIECE_CODES["maxpool"] else x.init.out_start for x in units]
        chunks = np.cumsum([0] + [len(x.chunk_table) for x in units]).tolist()
        rows = [
            {
                "root": j if x.root < 0 else next(r for r in range(j, -1, -1) if units[r].root < 0),
                "chunk": int(x.root >= 0),
                "ctx": x.context,
                "ld_dur": x.load_cycles,
                "wb_dur": x.wb_cycles,
                "ld_n": len(x.load),
                "wb_n": x.n_wb,
                "first": first_desc[k, j],
                "n_mem": x.n_mem,
                "n_count": x.n_count,
                "n_shift": x.n_shift,
                "sums": int(x.graded_sums),
                "banked": int(x.banked),
                "state_base": x.state_base,
                "spike_base": max(0, x.spike_base),
                "spikes": int(x.spike_base >= 0),
                "emit": e0,
                "T": x.init.timesteps,
                "row_bits": x.init.n * x.row_bits,
                "cbase": chunks[j],
            }
            for j, (x, e0) in enumerate(zip(units, emit))
        ]
        return FieldTable(m, f"rounds{k}", rows)

    def _loader_port(self, m: Module, shared: dict, mem_ports: list, ld: dict, mine) -> None:
        """One load record's write ports: a synapse descriptor writes its ``delay`` (count) words, one
        port each; the others one word of the memory ``sel`` names (a membrane word to every organisation)."""
        c = self.hw.core
        lanes, vb = c.lanes, c.v_bits
        sbits = lanes * c.weight_bits
        sel, tgt, delay, data = ld["sel"], ld["tgt"], ld["delay"], ld["data"]
        for q in range(self.plan.syn_per_word):
            syn_w = shared["syn"].write_port()
            m.d.comb += [
                syn_w.addr.eq(tgt + q),
                syn_w.data.eq(data[q * sbits : (q + 1) * sbits]),
                syn_w.en.eq(mine & (sel == SEL_SYNAPSE) & (delay > q)),
            ]
        par_w = shared["par"].write_port()
        m.d.comb += [par_w.addr.eq(tgt), par_w.data.eq(data[: lanes * 2 * vb]), par_w.en.eq(mine & (sel == SEL_PARAMS))]
        for name, code in (("sums", SEL_SUMS), ("lut", SEL_LUT), ("shift", SEL_SHIFT), ("operands", SEL_OPS)):
            if name in shared:
                wp = shared[name].write_port()
                bits = shared[name].shape.width
                m.d.comb += [wp.addr.eq(tgt), wp.data.eq(data[:bits]), wp.en.eq(mine & (sel == code))]
        for mm, part in mem_ports:
            w = mm.write_port()
            m.d.comb += [w.addr.eq(tgt), w.data.eq(data[part]), w.en.eq(mine & (sel == SEL_MEMBRANE))]

    def _feeder(self, m: Module, k: int, units: list, ctxs: list, ctx_now, s: dict, new_round, records) -> None:
        """Core ``k``'s feeder: whatever round runs, one pending bit per bit (or value) of each of its
        chunks' DRAM words that is a source a slot needs (:attr:`RoundUnit.chunk_table`'s mask, read
        from the chunk table memory when the chunk's word arrives; ``records``: ``(valid, sel, tgt,
        data)`` of each record of the cycle, ``tgt`` the chunk); from the cycle before the load ends it
        offers the running round's context the lowest pending ``(chunk, bit)`` (the plan's feed order),
        one per cycle, with its slot, global source index (the neuron table at the chunk's base plus
        the bit) and value (payloads), and clears it when taken. A new load (``new_round``) clears
        every bit."""
        plan = self.plan
        vb, width = self.hw.core.v_bits, plan.width
        tables = [x.chunk_table for x in units]
        nch = max(len(t) for t in tables)
        if nch == 0:
            return  # no round of this core reads a source's words
        graded_any = any(e[2] for t in tables for e in t)
        hpw = plan.host_per_word  # values per word of a graded chunk
        sbits = index_bits(self.hw.core.slots)
        nbits = index_bits(len(plan.neurons) + 1)
        fields = [width, sbits, 1, nbits]  # mask, slot, graded, neuron-table base
        entries = [e for t in tables for e in t]
        packed = [e[0] | e[1] << width | e[2] << (width + sbits) | e[3] << (width + sbits + 1) for e in entries]
        m.submodules[f"feed_table{k}"] = ctab = Memory(shape=unsigned(sum(fields)), depth=len(packed), init=packed)
        pend = [Signal(width, name=f"pend_{k}_{ch}") for ch in range(nch)]
        word = [Signal(width, name=f"word_{k}_{ch}") for ch in range(nch)] if graded_any else []
        slot_r = [Signal(sbits, name=f"slot_{k}_{ch}") for ch in range(nch)]
        graded_r = [Signal(name=f"graded_{k}_{ch}") for ch in range(nch)]
        base_r = [Signal(nbits, name=f"nbase_{k}_{ch}") for ch in range(nch)]
        feeding = Signal(name=f"feeding_{k}")
        feed_now = s["pre"] | feeding
        with m.If(s["pre"]):
            m.d.sync += feeding.eq(1)
        with m.If(s["i_end"]):
            m.d.sync += feeding.eq(0)
        # the lowest pending (chunk, bit): the lowest chunk with a pending bit, then its lowest bit
        has = Cat(*(p.any() for p in pend))
        ch_sel = lowest_set(m, has, f"chsel_{k}")
        p_sel = Signal(width, name=f"psel_{k}")
        m.d.comb += p_sel.eq(Array(pend)[ch_sel])
        b_sel = lowest_set(m, p_sel, f"bsel_{k}")
        valid = feed_now & has.any()
        graded = Array(graded_r)[ch_sel]
        value = Array(word)[ch_sel].word_select(b_sel, vb).as_signed() if graded_any else Const(0, signed(vb))
        nrd = self.neuron_table.read_port(domain="comb")
        m.d.comb += nrd.addr.eq(Array(base_r)[ch_sel] + b_sel)
        ready = Array(ctx.events.ready for ctx in ctxs)[ctx_now]
        for c_, ctx in enumerate(ctxs):  # the running round's context takes the events
            m.d.comb += [
                ctx.events.valid.eq(valid & (ctx_now == c_)),
                ctx.events.payload.type.eq(Mux(graded, TYPE_GRADED, TYPE_SPIKE)),
                ctx.events.payload.slot.eq(Array(slot_r)[ch_sel]),
                ctx.events.payload.index.eq(nrd.data),
                ctx.events.payload.payload.eq(Mux(graded, value, 0)),
            ]
        nxt = [Signal(width, name=f"pend_next_{k}_{ch}") for ch in range(nch)]
        for ch in range(nch):
            m.d.comb += nxt[ch].eq(pend[ch])
            with m.If(new_round):
                m.d.comb += nxt[ch].eq(0)  # a new round: nothing pending yet
            with m.Elif(valid & ready & (ch_sel == ch)):
                m.d.comb += nxt[ch].eq(pend[ch] & ~(Const(1, width) << b_sel)[:width])
        # the round's spike and host words, in descriptor order: the chunk's mask picks its sources (the
        # records of one cycle are different chunks')
        cbase = s["ld_cbase"]  # the loading round's first chunk table word (its round table's)
        for ld, sel, tgt, data in records:
            rd = ctab.read_port(domain="comb")
            m.d.comb += rd.addr.eq(cbase + tgt)
            mask, slot, g, nbase = (rd.data.word_select(0, width), *self._fields(rd.data, fields))
            values = Cat(*((data.word_select(v, vb) != 0) for v in range(hpw)))
            bits = Mux(g, values & mask, data & mask)
            with m.If(ld & ((sel == SEL_SPIKES) | (sel == SEL_HOST))):
                for ch in range(nch):
                    with m.If(tgt == ch):
                        m.d.comb += nxt[ch].eq(bits)
                        m.d.sync += [slot_r[ch].eq(slot), graded_r[ch].eq(g), base_r[ch].eq(nbase)]
                        if graded_any:
                            m.d.sync += word[ch].eq(data)
        for ch in range(nch):
            m.d.sync += pend[ch].eq(nxt[ch])

    @staticmethod
    def _fields(value, fields: list[int]) -> list:
        """The slot, graded and base fields of a chunk table word (after its mask)."""
        out, off = [], fields[0]
        for f in fields[1:]:
            out.append(value[off : off + f])
            off += f
        return out
