"""Rounds-mode contexts per piece structure (``docs/rtl.md``, "Rounds mode"): each core position
builds one context per structure key, and every round's load writes the piece's register values,
read from its DRAM image, into that context before the round's first event."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_rtl_rounds import rounds_program, split_program

from spikeforge.rtl.cosim import cosim_rounds
from spikeforge.rtl.piece import CONTEXT_REGISTERS, REGISTER_BITS, SLOT_REGISTERS, register_values, structure_key
from spikeforge.rtl.rounds import SEL_REGS, rounds_plan
from spikeforge.rtl.scenarios import dense_network, dense_program


def check_registers(plan) -> None:
    """Every round's load starts with one descriptor per register, reading the piece's values from
    its DRAM image into the register of that index; rounds share a context iff their keys are equal."""
    for us in plan.units.values():
        for u in us:
            values = register_values(u.init)
            regs = u.load[: len(values)]
            assert [d[:2] for d in regs] == [(SEL_REGS, a) for a in range(len(values))]
            assert all(d[0] != SEL_REGS for d in u.load[len(values) :])
            assert [plan.dram[d[2]] for d in regs] == [v & ((1 << REGISTER_BITS) - 1) for v in values]
        for a in us:
            for b in us:
                assert (a.context == b.context) == (structure_key(a.init) == structure_key(b.init))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(3, 20), min_size=2, max_size=4),
    lanes=st.sampled_from([2, 4]),
    cols=st.integers(1, 2),
)
def test_every_round_loads_its_registers_first_from_its_dram_image(seed, sizes, lanes, cols):
    graph = dense_network(seed, (12, *sizes), timesteps=2)
    program = dense_program(graph, 1, cols, neurons=16, lanes=lanes, axons=32)
    assume(program.plan.mode == "rounds")
    check_registers(rounds_plan(program))


def test_a_slices_chunks_share_a_context_and_its_root_has_its_own():
    """One core: the root of the split slice, its two partial chunks, the output."""
    program, _ = split_program(1)
    (units,) = rounds_plan(program).units.values()
    assert [u.root >= 0 for u in units] == [False, True, True, False]
    assert [u.context for u in units] == [0, 1, 1, 2]


def shared_rounds():
    """The deep case (four hidden layers and the output on two cores) and a core position whose
    rounds outnumber its contexts; the round that runs in a context another piece set up first."""
    program, x = rounds_program("deep")
    plan = rounds_plan(program)
    check_registers(plan)
    k, us = next((k, us) for k, us in plan.units.items() if max(u.context for u in us) + 1 < len(us))
    later = next(u for j, u in enumerate(us) if u.context in [v.context for v in us[:j]])
    return program, x, plan, k, later


@pytest.mark.rtl
@pytest.mark.icarus
def test_rounds_in_a_shared_context_match_the_simulator_at_every_step():
    """The deep case at the plan's one descriptor per cycle: core 0 runs ``h2`` and ``h4`` in one
    context, core 1 ``h1`` and ``h3`` in one and the output in another."""
    program, x, plan, k, later = shared_rounds()
    contexts = {k: len({u.context for u in us}) for k, us in plan.units.items()}
    assert contexts == {0: 1, 1: 2} and {k: len(us) for k, us in plan.units.items()} == {0: 2, 1: 3}
    assert plan.ports == 1
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps
    assert report.membranes == report.steps * sum(p.n for p in program.pieces) and report.spikes > 0


@pytest.mark.rtl
@pytest.mark.icarus
def test_registers_landing_in_the_grant_cycle_go_to_the_new_rounds_context():
    """The max-pool case (two ``h`` slices in one context, the max-pool and the output in their own)
    with 16 descriptors per cycle, more than its transfers need (the loads end earlier, the transfers
    do not): a round's 11 registers all land in its grant cycle, when a round granted in the cycle it
    is requested is not yet the core's current one. Exact at every step (written into the previous
    round's context instead, a membrane differs at step 3)."""
    program, x = rounds_program("pool")
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    assert [u.context for u in units] == [0, 0, 1, 2] and {len(register_values(u.init)) for u in units} == {11}
    plan.ports = 16
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_a_register_word_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of slot 0's ``base`` (its first synapse word) in the DRAM image of a round that shares
    its context: the round reads its weights one word (a lane group) further on, so its membranes
    are first off at the first step its slot has a source spike, on its core; nothing before."""
    from spikeforge.sim import Simulator

    program, x, plan, k, later = shared_rounds()
    values = register_values(later.init)
    at = len(CONTEXT_REGISTERS) + SLOT_REGISTERS.index("base")  # slot 0's base
    word = later.load[at][2]
    assert later.load[at][:2] == (SEL_REGS, at) and plan.dram[word] == values[at]
    run = Simulator(program, trace=True).run(x)
    slot = program.pieces[later.piece].slots[0]
    delay = int(program.graph.projections[slot.proj].delay)
    sources = [q.id for q in program.pieces if q.population == slot.src]

    def emitted(t: int) -> bool:  # a source piece spiked at step t
        return any(run.trace[t].spikes[q] is not None and run.trace[t].spikes[q].any() for q in sources)

    first = next(t for t in range(max(later.lo, delay + 1), later.hi) if emitted(t - 1 - delay))
    assert (first, k, later.init.population) == (4, 0, "h4")
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first
    at_first = [m for m in report.mismatches if m["step"] == first]
    assert {(m["core"], m["piece"]) for m in at_first} == {(k, later.piece)}
    assert any(m["what"] == "membrane (DRAM state)" for m in at_first)
