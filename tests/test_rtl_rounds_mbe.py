"""MBE units, graded products and graded max-pools in the rounds-mode RTL (``rtl/rounds.py``,
``docs/architecture.md`` sections 4.3-4.5 and 7) against the simulator.

A round of an ``mbe`` piece reads its table words (image), its ``X`` and basis membranes and its
shift words (state) from DRAM and writes the state and its payload row (``v_bits`` per unit) back;
a round reading an MBE population or a graded max-pool reads those payload rows. Graded products and
max-pools keep their running payload sums as state. The graphs are the simulator's feature graphs
(``tests/test_mbe_vit_hardware.py``), small enough for about 15 s of Icarus each.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_mbe_vit_hardware import mbe_core, pool_graph, product_graph, runnable
from test_rtl_rounds import needs_icarus

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.rtl.cosim import cosim_rounds
from spikeforge.rtl.rounds import SEL_LUT, SEL_SHIFT, SEL_SPIKES, SEL_SUMS, rounds_plan
from spikeforge.sim import Simulator


def mbe_rounds_program(case: str):
    """``product``: in -> a (MBE, fed by the host) -> b (MBE, fed by a: payload rows through DRAM)
    -> a x b (graded product, running payload sums) -> p (MBE, its membranes on the lane banks)
    -> out, on 1 x 2; a and b have an ``inv`` split (shift words as state); ``pool``: in -> m (MBE,
    ``inv`` split, in four pieces whose shift words share the core's shift memory in turn) -> a graded
    2 x 2 max-pool (payload sums, payload rows) -> m2 (MBE) and out, on 1 x 1."""
    rng = np.random.default_rng(3)
    if case == "product":
        graph, x = runnable(lambda r: product_graph(r, 2, "mbe", "matmul", False, "inv", True), rng, (1, 4))
        hw = hw_of(1, 2, neurons=32, lanes=4, **mbe_core())
    else:
        graph, x = runnable(lambda r: pool_graph(r, 2, 2, 1, "inv"), rng, (1, 5))
        hw = hw_of(1, 1, neurons=16, lanes=4, **mbe_core())
    program = compile(graph, hw)
    assert program.plan.mode == "rounds"
    return program, x[0]


def units_of(plan, program, population):
    return [u for us in plan.units.values() for u in us if program.pieces[u.piece].population == population]


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("case", ["product", "pool"])
def test_mbe_rounds_match_the_simulator_at_every_step(case):
    program, x = mbe_rounds_program(case)
    run = Simulator(program, trace=True).run(x)
    plan = rounds_plan(program)
    steps = len(run.trace)
    units = [u for us in plan.units.values() for u in us]
    kinds = {program.pieces[u.piece].kind for u in units}
    lanes = program.hardware.core.lanes
    for u in units:
        if program.pieces[u.piece].kind == "mbe":  # X and N basis blocks; tables loaded as the image
            assert u.n_mem == (u.init.bases + 1) * -(-u.init.n // lanes) and u.n_lut > 0 and u.row_bits == 32
            assert sum(d[0] == SEL_LUT for d in u.load) == u.n_lut
    if case == "product":
        assert kinds == {"mbe", "output"} and len(plan.units) == 2
        (b,) = units_of(plan, program, "b")  # b reads a's payload rows: v_bits values, graded events
        assert any(d[0] == SEL_SPIKES for d in b.load) and all(f[2] == 1 for f in b.feed if f[0] == 0)
        target = units_of(plan, program, "p")
        assert target and all(u.graded_sums and u.banked for u in target)  # its X and bases on the banks
        assert all(sum(d[0] == SEL_SUMS for d in u.load) == u.n_count > 0 for u in target)
        for u in units_of(plan, program, "a") + [b]:  # the inv split's shift words are state
            assert sum(d[0] == SEL_SHIFT for d in u.load) == u.n_shift == -(-u.init.n // lanes)
    else:
        assert kinds == {"mbe", "maxpool", "output"}
        (pool,) = units_of(plan, program, "mx")
        assert pool.graded_sums and pool.row_bits == 32 and pool.n_count == 4 * -(-pool.init.n // lanes)
        m = units_of(plan, program, "m")
        assert len(m) == 4 and all(u.n_shift == 1 for u in m)  # one shift word each, all at word 0
        shifts = {int(v) for tr in run.trace for u in m if tr.sums[u.piece] is not None for v in tr.sums[u.piece]}
        assert len(shifts) >= 2  # a shift word not loaded back would show
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == steps
    assert report.rounds == sum(u.lo <= t < u.hi for t in range(steps) for u in units)
    assert report.membranes == steps * sum(len(run.trace[0].membranes[p.id]) for p in program.pieces)
    rows = sum(p.n for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None)
    assert report.spikes == rows > 0  # every payload (and spike) row, every step
    emitted = [tr.spikes[p.id] for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None]
    assert len({int(v) for row in emitted for v in row if v}) >= 3  # payloads, not bits
    assert report.counts == steps * sum(u.n_count + u.n_shift for u in units) > 0  # sums and shifts, every barrier
    assert report.logits == program.graph.output.size


@pytest.mark.rtl
@needs_icarus
def test_a_flipped_bit_in_a_payload_row_is_reported_and_read_by_the_next_round():
    """Bit 5 of a's first payload-row word flipped as it is written back at every round: at a's first
    output step unit 0's payload in the DRAM is 32 off (nothing differs before: the rows of steps it
    does not emit at are read by no round), and at the next step b's round reads that row, so b's
    membranes differ from the simulator's from then on."""
    program, x = mbe_rounds_program("product")
    plan = rounds_plan(program)
    (a,) = units_of(plan, program, "a")
    (b,) = units_of(plan, program, "b")
    emit = program.graph.schedule()["a"].out_start
    row0 = a.n_mem + a.n_count + a.n_shift  # the write-back: membranes, sums, shifts, then the row
    report = cosim_rounds(program, x, wb_flip=(a.piece, 5, row0))
    assert not report.ok
    first = min(report.mismatches, key=lambda m: m["step"])
    assert (first["step"], first["piece"], first["what"], first["neuron"]) == (emit, a.piece, "payload (DRAM row)", 0)
    assert first["got"] - first["expected"] in (32, -32)
    hit = [m for m in report.mismatches if m.get("piece") == b.piece and m["what"] == "membrane (DRAM state)"]
    assert hit and min(m["step"] for m in hit) == emit + 1
