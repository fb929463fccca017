"""The MBE ViT's units in the RTL core (``docs/architecture.md`` sections 4.3 to 4.5, ``docs/rtl.md``),
co-simulated cycle for cycle against the simulator (cocotb + Icarus): the split unit (exponent
split, output bias and shift), MBE inputs that arrive before the input window, graded products and
the graded max-pool. Small random graphs of ``tests/test_mbe_vit_hardware.py``; every membrane,
basis membrane, payload, packet, running sum and shift word at every barrier; one mutation per unit
that the bench must report.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_mbe_vit_hardware import mbe_core, pool_graph, product_graph, runnable, split_graph

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.rtl import cosim_core
from spikeforge.rtl.array import array_inits
from spikeforge.rtl.cosim import cosim_array
from spikeforge.rtl.piece import piece_init
from spikeforge.sim import Simulator

pytestmark = pytest.mark.rtl


def split_program(seed, splits, lanes, axons=256, delay=0):
    """``in -> m0 -> m1 -> out`` with ``in -> m1`` early, on a 2 x 2 array of 32-neuron cores."""
    rng = np.random.default_rng(seed)
    graph, x = runnable(lambda r: split_graph(r, 3, splits, width=6, delay=delay), rng, (1, 5))
    program = compile(graph, hw_of(2, 2, neurons=32, lanes=lanes, axons=axons, **mbe_core()))
    assert program.plan.mode == "resident"
    return program, x[0]


def piece_of(program, population, kind="mbe"):
    return next(p for p in program.pieces if p.population == population and p.kind == kind)


# --------------------------------------------------------------------------- split unit (4.5)
@pytest.mark.icarus
@pytest.mark.parametrize("seed, split, lanes", [(3, "invsqrt", 4)])  # exp2 and inv: the array test below
def test_the_split_unit_matches_the_simulator(seed, split, lanes):
    """An ``mbe`` core with an exponent split, output bias and shift: every ``X``, basis membrane,
    shifted payload and graded packet, each unit's shift word at every barrier, phase ends and busy
    cycles, exactly; the shifts differ between units (the split does something)."""
    program, x = split_program(seed, (split, "none"), lanes)
    m0 = piece_of(program, "m0")
    rep = cosim_core(program, m0.id, x)
    assert rep.ok, rep.first_mismatch()
    run = Simulator(program, trace=True).run(x)
    shifts = [tr.sums[m0.id] for tr in run.trace if tr.sums[m0.id] is not None]
    assert rep.sums == sum(len(s) for s in shifts) == m0.n * len(run.trace)
    out_start = program.graph.schedule()["m0"].out_start
    assert len({int(v) for v in run.trace[out_start].sums[m0.id]}) >= 2
    pays = [tr.spikes[m0.id] for tr in run.trace if tr.spikes[m0.id] is not None]
    assert rep.spikes == sum(len(p) for p in pays) and len({int(v) for p in pays for v in p}) >= 6
    assert rep.packets == sum(int((tr.flit_src == m0.id).sum()) for tr in run.trace) > 0


@pytest.mark.icarus
def test_a_wrong_shift_base_is_reported():
    """``shift_base`` one higher in the parameter image (basis 0's offset word): the shift words differ
    from the first output step on, and payloads with them."""
    program, x = split_program(4, ("inv", "none"), 4)
    m0 = piece_of(program, "m0")
    init = piece_init(program, m0.id)
    params = init.params.copy()
    params[m0.n + 2 * program.graph.timesteps, 2] += 1  # (C_0, split code, shift_base)
    rep = cosim_core(program, m0.id, x, init=dataclasses.replace(init, params=params))
    assert not rep.ok
    out_start = program.graph.schedule()["m0"].out_start
    first = rep.mismatches[0]
    assert first["what"] == "running sum, maximum or shift word" and first["step"] == out_start, rep.first_mismatch()
    assert any(m["what"] == "payload" for m in rep.mismatches)


# --------------------------------------------------------------------------- early inputs (4, 4.5)
@pytest.mark.icarus
def test_early_inputs_and_their_partial_sums_match_on_the_array():
    """``in -> m1`` arrives at step 1, three steps before m1's input window; m1's fan-in is split over
    2 axons, so a partial piece holds early rows and sends its sums from step 1 (phase P before the
    window). The whole 2 x 2 array, with splits in both MBE populations, equals the simulator; the
    partial piece sending from its input window only is reported at step 1."""
    program, x = split_program(1, ("inv", "exp2"), 4, axons=2)
    part = piece_of(program, "m1", "partial")
    first = program.graph.schedule()["in"].out_start + 1
    assert first < program.graph.schedule()["m1"].in_start
    assert any(program.graph.projections[s.proj].src == "in" for s in part.slots)
    run = Simulator(program, trace=True).run(x)
    assert run.trace[first].phase_p > 0  # partial sums cross the mesh before m1's window
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.steps == len(run.trace) and report.spikes > 0
    inits = array_inits(program)
    k = int(program.plan.core[part.id])
    inits[k] = dataclasses.replace(inits[k], acc_start=-1)  # phase P from in_start only
    report = cosim_array(program, x, inits=inits)
    assert not report.ok and report.mismatches[0]["step"] == first, report.format()


# --------------------------------------------------------------------------- graded products (4.3)
def graded_product_program(seed, lanes, spiking_b):
    """MBE operands (``b`` DIF neurons when ``spiking_b``) -> matmul product -> IF/DIF neurons -> out,
    resident on a 3 x 3 array of 32-neuron cores."""
    rng = np.random.default_rng(seed)
    graph, x = runnable(
        lambda r: product_graph(r, 3, "neuron", "matmul", False, "none", False, 0, spiking_b), rng, (1, 4)
    )
    program = compile(graph, hw_of(3, 3, neurons=32, lanes=lanes, **mbe_core()))
    assert program.plan.mode == "resident"
    return program, x[0]


@pytest.mark.icarus
@pytest.mark.parametrize("seed, lanes, spiking_b", [(57, 4, False)])
def test_graded_products_into_if_neurons_match_the_simulator(seed, lanes, spiking_b):
    """A product of MBE payloads into IF/DIF neurons (a 3 x 2 block on 4 lanes): running payload sums
    of ``v_bits`` in the synapse SRAM, ``w * p`` per event. Every product core: phase ends, busy
    cycles, membranes (skewed banks), spikes and every running sum at every barrier, exactly; the
    sums are payload sums, not spike counts."""
    program, x = graded_product_program(seed, lanes, spiking_b)
    run = Simulator(program, trace=True).run(x)
    fed = [p for p in program.pieces if p.kind == "product"]
    assert fed and all(piece_init(program, p.id).graded_sums for p in fed)
    for p in fed:
        rep = cosim_core(program, p.id, x, run=run)
        assert rep.ok, rep.first_mismatch()
        assert rep.sums == sum(len(tr.sums[p.id]) for tr in run.trace) > 0
    last = np.concatenate([run.trace[-1].sums[p.id] for p in fed])
    assert (last < 0).any() or (last > 3).any()  # payloads summed (signed, beyond one count per step)


@pytest.mark.icarus
def test_a_count_where_a_payload_sum_is_due_is_reported():
    """The ``count_one`` fault hook adds 1 to an operand's running sum instead of its payload: the
    sums, then the membranes, differ from the simulator's."""
    program, x = graded_product_program(57, 4, False)
    fed = next(p for p in program.pieces if p.kind == "product")
    rep = cosim_core(program, fed.id, x, product_fault="count_one")
    assert not rep.ok
    first = rep.mismatches[0]["step"]
    whats = {m["what"] for m in rep.mismatches if m["step"] == first}
    assert {"membrane", "running sum, maximum or shift word"} <= whats, rep.first_mismatch()


def test_payload_sums_or_max_pool_counts_that_do_not_fit_are_refused():
    """The RTL pads each payload-sum row to whole words of ``lanes`` sums: a block whose words exceed
    the synapse SRAM's bits is refused with a sentence, and so is a max-pool whose counts are wider
    than the synapse words' lanes (graded products on swap cores: ``tests/test_rtl_swap_mbe.py``)."""
    from spikeforge.rtl import RtlError

    program, _ = graded_product_program(57, 4, False)
    fed = next(p for p in program.pieces if p.kind == "product")
    small = dataclasses.replace(program.hardware.core, axons=1, neurons=8)
    tight = dataclasses.replace(program, hardware=dataclasses.replace(program.hardware, core=small))
    with pytest.raises(RtlError, match="running payload sums take .* more than the synapse SRAM"):
        piece_init(tight, fed.id)
    from test_rtl_array import dense_program

    from spikeforge.rtl.scenarios import pooled_network

    pooled = dense_program(pooled_network(5), 2, 3, neurons=16, lanes=4)
    pool = next(p for p in pooled.pieces if p.kind == "maxpool")
    wide = dataclasses.replace(pooled.hardware.core, count_bits=8, weight_bits=4)
    wide_counts = dataclasses.replace(pooled, hardware=dataclasses.replace(pooled.hardware, core=wide))
    with pytest.raises(RtlError, match="max-pool of .* do not fit the synapse SRAM"):
        piece_init(wide_counts, pool.id)


# --------------------------------------------------------------------------- graded max-pool (4.4)
def pool_program(seed, kernel, channels, split, lanes, neurons=64, side=2):
    """``in -> m (C, H, W) MBE -> graded max-pool -> m2, out`` on a ``side x side`` array."""
    rng = np.random.default_rng(seed)
    graph, x = runnable(lambda r: pool_graph(r, 3, kernel, channels, split), rng, (1, 5))
    program = compile(graph, hw_of(side, side, neurons=neurons, lanes=lanes, **mbe_core()))
    assert program.plan.mode == "resident" and graph.graded("mx")
    return program, x[0]


@pytest.mark.icarus
@pytest.mark.parametrize("seed, kernel, channels, split, lanes", [(6, 3, 2, "inv", 4)])
def test_a_graded_max_pool_matches_the_simulator(seed, kernel, channels, split, lanes):
    """A max-pool of MBE payloads: every payload event adds to its running sum in the synapse SRAM;
    phase F takes ``ceil(n/lanes) * kernel**2`` cycles and emits ``M - M_prev``. Every sum, every
    ``M_prev`` (the membrane SRAM), every emitted payload and graded packet, phase ends and busy
    cycles at every barrier, exactly; the sums and emissions have both signs. On 16-neuron cores (4
    lane groups) the 9 cycles of phase F exceed the membrane's words (a phase-F counter sized by
    them wrapped: the bug the converted ViT's max-pool found, ``scripts/cosim_vit_pieces.py``)."""
    program, x = pool_program(seed, kernel, channels, split, lanes, neurons=16, side=3)
    (mx,) = [p for p in program.pieces if p.kind == "maxpool"]
    run = Simulator(program, trace=True).run(x)
    rep = cosim_core(program, mx.id, x, run=run)
    assert rep.ok, rep.first_mismatch()
    assert rep.sums == len(run.trace) * mx.n * kernel**2
    window = program.graph.schedule()["mx"]
    groups = -(-mx.n // program.hardware.core.lanes)
    assert [int(tr.fire_cycles[mx.id]) for tr in run.trace[window.in_start : window.in_start + 3]] == [
        groups * kernel**2
    ] * 3
    pays = np.concatenate([tr.spikes[mx.id] for tr in run.trace if tr.spikes[mx.id] is not None])
    assert (pays < 0).any() and (pays > 0).any()
    assert rep.packets == sum(int((tr.flit_src == mx.id).sum()) for tr in run.trace) > 0


@pytest.mark.icarus
def test_a_flipped_payload_sum_bit_is_reported():
    """A resident graded max-pool's sums start as the piece's synapse image (zeros): with bit 20 of
    one sum set in the image (``PieceInit.synapse`` word 1, lane 0: unit 0's second window place; 4
    lanes), the sums differ from the first barrier on and the emissions follow."""
    program, x = pool_program(6, 3, 2, "inv", 4, neurons=16, side=3)
    (mx,) = [p for p in program.pieces if p.kind == "maxpool"]
    init = piece_init(program, mx.id)
    synapse = np.zeros((9 * -(-mx.n // 4), 4), np.int64)  # kernel**2 words per lane group
    synapse[1, 0] = 1 << 20
    rep = cosim_core(program, mx.id, x, init=dataclasses.replace(init, synapse=synapse))
    assert not rep.ok
    assert rep.mismatches[0]["step"] == 0 and rep.mismatches[0]["what"] == "running sum, maximum or shift word"
    assert any(m["what"] == "payload" for m in rep.mismatches), rep.first_mismatch()


# --------------------------------------------------------------------------- products into MBE units and the output
@pytest.mark.icarus
def test_a_product_into_mbe_units_with_early_operands_matches_the_simulator():
    """``a`` (MBE) x ``b`` (MBE, fed by ``a``, one window later, and ``delay_b = 1``) -> a 2 x 3 block of
    MBE units (an ``invsqrt`` split) on 4 lanes: ``X`` and every basis block in the skewed banks, the
    payloads, packets, running payload sums and shift words at every barrier, exactly; ``a``'s
    payloads reach the units before their input window."""
    rng = np.random.default_rng(1)
    graph, x = runnable(lambda r: product_graph(r, 3, "mbe", "matmul", False, "none", True, 1), rng, (1, 4))
    program = compile(graph, hw_of(3, 3, neurons=32, lanes=4, **mbe_core()))
    p = next(q for q in program.pieces if q.population == "p")
    assert (p.geometry["i1"] - p.geometry["i0"], p.geometry["j1"] - p.geometry["j0"]) == (2, 3)
    assert graph.population("p").split == "invsqrt"
    run = Simulator(program, trace=True).run(x[0])
    first = next(tr.step for tr in run.trace if (tr.flit_piece == p.id).any())
    assert first < graph.schedule()["p"].in_start  # early operands
    rep = cosim_core(program, p.id, x[0], run=run)
    assert rep.ok, rep.first_mismatch()
    assert rep.membranes == len(run.trace) * 3 * 8  # X and two basis blocks of 2 lane groups
    assert rep.sums == sum(len(tr.sums[p.id]) for tr in run.trace) > 0
    assert rep.packets == sum(int((tr.flit_src == p.id).sum()) for tr in run.trace) > 0


@pytest.mark.icarus
def test_an_output_fed_by_a_product_is_read_by_the_host_from_its_banks():
    """``a`` x ``a`` -> a 3 x 2 block of output accumulators on 4 lanes (skewed banks: positions
    ``[0, 1, 3, 5, -, 2, 4, -]``): the whole 2 x 2 array, the accumulators at every barrier and the
    logits the host reads over the read-out port (mapped back from the bank positions), exactly."""
    from spikeforge.rtl.piece import readout_order

    rng = np.random.default_rng(14)
    graph, x = runnable(lambda r: product_graph(r, 3, "output", "matmul", True, "none", False), rng, (1, 4))
    program = compile(graph, hw_of(2, 2, neurons=32, lanes=4, **mbe_core()))
    out = next(q for q in program.pieces if q.kind == "output")
    assert readout_order(program, out.id) == [0, 1, 3, 5, -1, 2, 4, -1]
    report = cosim_array(program, x[0])
    assert report.ok, report.format()
    assert report.logits == 8 and report.spikes > 0


def test_export_writes_the_payload_sums_as_the_core_holds_them(tmp_path):
    """The export's init files (``rtl/export.py``, from :func:`~spikeforge.rtl.core.memory_words`): a
    graded max-pool's synapse file holds its ``kernel**2 * ceil(n/lanes)`` words of ``lanes``
    ``v_bits`` sums (zeros), the words the generated module's memory starts from, not weight words."""
    from spikeforge.rtl.core import memory_words, sum_words
    from spikeforge.rtl.export import _write_memories

    program, _ = pool_program(6, 3, 2, "inv", 4, neurons=16, side=3)
    (mx,) = [p for p in program.pieces if p.kind == "maxpool"]
    init = piece_init(program, mx.id)
    name, words, bits = memory_words(program.hardware, init)[0]
    assert (name, len(words), bits) == ("synapse", sum_words(program.hardware, init), 4 * 32) and len(words) == 9
    files = _write_memories(tmp_path, "core_mx", program.hardware, init)
    lines = (tmp_path / files["synapse"]["file"]).read_text().split()
    assert len(lines) == 9 and all(int(v, 16) == 0 for v in lines)


@pytest.mark.icarus
def test_a_spiking_max_pools_counts_are_in_the_synapse_sram():
    """The spiking max-pool keeps its running counts in the synapse SRAM and its maxima in the
    membrane SRAM (section 3): a count of 15 set in the piece's synapse image (word 0, lane 0: output
    0's first window place) wraps at the first spike into it, so the counts differ from the simulator's
    and the maximum (a membrane) with them (``tests/test_rtl_array.py`` runs the piece unaltered)."""
    from test_rtl_array import dense_program

    from spikeforge.rtl.scenarios import pooled_network

    program = dense_program(pooled_network(5), 2, 3, neurons=16, lanes=4)
    pool = next(p for p in program.pieces if p.kind == "maxpool")
    x = np.random.default_rng(5).integers(0, 16, 12)
    init = piece_init(program, pool.id)
    synapse = np.zeros((4 * -(-pool.n // 4), 4), np.int64)
    synapse[0, 0] = 15  # count_bits = 4
    rep = cosim_core(program, pool.id, x, init=dataclasses.replace(init, synapse=synapse))
    assert not rep.ok
    assert rep.mismatches[0]["what"] == "running sum, maximum or shift word", rep.first_mismatch()
