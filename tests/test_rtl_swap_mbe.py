"""``swap`` mode in the RTL with the MBE ViT's pieces (``docs/architecture.md`` sections 4.3, 4.5, 7).

A chain ``in -> m0 -> a`` of MBE units, then ``a x a`` (a matmul product of MBE payloads) into MBE
units or IF neurons ``p``, then the output, on a 1 x 3 array of 32-neuron cores at T = 1: the
pieces of ``p`` are loaded at run time onto the cores that held ``m0`` and ``a`` (one of them after
an MBE piece), so the DMA engine must load their MBE tables, their running payload sums (zeros),
their ``X`` and basis blocks and output shifts (zeros) over whatever the previous piece left. Every
step's cycles and DRAM stall, every piece's membranes (MBE blocks included), payloads or spikes,
running sums and shift words at every barrier, and the logits must equal the simulator's. A
chain of MBE layers on a 1 x 2 array (one MBE piece loaded over another's memories) carries the
mutation: a flipped table bit in DRAM. A graded max-pool (payload sums, section 4.4) loaded over an MBE
piece on a 2 x 2 array carries another: its load without its zeroed payload-sum records.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_mbe_vit_hardware import V_BITS, mbe_core, product_indices, runnable, split_pop

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.mapping.images import PIECE_CODES
from spikeforge.models.graph import (
    DenseProjection,
    InputPopulation,
    MaxPoolPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolProjection,
    ProductProjection,
    SNNGraph,
)
from spikeforge.rtl.cosim import cosim_array
from spikeforge.rtl.piece import piece_init
from spikeforge.rtl.swap import SEL_BITS, SEL_MEMBRANE, SEL_REGS, SEL_SYNAPSE, SEL_TABLE, swap_plan
from spikeforge.sim import Simulator

MBE = PIECE_CODES["mbe"]


def chain_graph(rng, T: int, target: str) -> SNNGraph:
    """``in -> m0 -> a`` (MBE units), ``a x a -> p`` (a matmul product of MBE payloads; ``p`` MBE
    units with an ``inv`` split, or IF neurons), ``p -> out``."""
    a_idx, b_idx, n_out, n_a, _ = product_indices(rng, "matmul", 4, 4, True)
    pops = [InputPopulation("in", (4,), value_bits=3), split_pop("m0", 4, T, rng, "exp2")]
    pops.append(split_pop("a", n_a, T, rng, "none", small=True))
    projs = [
        DenseProjection("in", "m0", rng.integers(-1, 4, (4, 4))),
        DenseProjection("m0", "a", rng.integers(-2, 3, (n_a, 4))),
    ]
    if target == "mbe":
        pops.append(split_pop("p", n_out, T, rng, "inv", bias=False))
    else:
        th = rng.integers(1, 60, n_out)
        pops.append(
            NeuronPopulation("p", (n_out,), threshold=th, bias=rng.integers(-3, 4, n_out), v0=th // 4, delay=T - 1)
        )
    out_index = rng.permutation(n_out).reshape(a_idx.shape[0], a_idx.shape[1], b_idx.shape[2])
    w = int(rng.choice([-2, -1, 1, 2]))
    projs.append(ProductProjection("a", "a", "p", a_idx, b_idx, out_index, weight=w))
    pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
    projs.append(DenseProjection("p", "out", rng.integers(-2, 3, (3, n_out))))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=T, v_bits=V_BITS)


def chain_program(target: str):
    """The chain on a 1 x 3 array (seed 6: core 0 loads ``m0`` then a block of ``p``, core 1 ``a``
    then the output, core 2 the other block of ``p``)."""
    rng = np.random.default_rng(6)
    graph, x = runnable(lambda r: chain_graph(r, 1, target), rng, (1, 4))
    program = compile(graph, hw_of(1, 3, neurons=32, lanes=4, **mbe_core()))
    assert program.plan.mode == "swap"
    pops = [[program.pieces[pid].population for pid in tl] for tl in program.plan.timeline]
    assert pops == [["m0", "p"], ["a", "out"], ["p"]]
    return program, x[0]


@pytest.mark.rtl
@pytest.mark.icarus  # skipped without iverilog, fails under SPIKEFORGE_REQUIRE_PEERS (conftest)
@pytest.mark.parametrize("target", ["mbe", "neuron"])
def test_mbe_pieces_and_graded_products_load_from_dram_and_match_the_simulator(target):
    """``mbe``: MBE units fed by a graded product (skewed banks, tables, payload sums, shift words)
    loaded after an MBE piece; ``neuron``: graded ``product`` pieces (IF neurons) loaded after one."""
    program, x = chain_program(target)
    fed = [p for p in program.pieces if p.population == "p"]
    assert {p.kind for p in fed} == {"mbe" if target == "mbe" else "product"}
    assert all(piece_init(program, p.id).graded_sums for p in fed)
    run = Simulator(program, trace=True).run(x)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == len(run.trace)
    assert report.stall_cycles == int(run.step_stall.sum()) and report.stalled_steps >= 3
    live = program.plan.live
    # every piece while it is loaded: its membranes (an MBE piece's X and basis blocks) and its
    # running payload sums and shift words (p's payload sums among them)
    loaded = [(tr, p.id) for tr in run.trace for p in program.pieces if live[p.id, 0] <= tr.step < live[p.id, 1]]
    assert report.membranes == sum(len(tr.membranes[pid]) for tr, pid in loaded)
    assert report.sums == sum(len(tr.sums[pid]) for tr, pid in loaded if tr.sums[pid] is not None)
    assert any(tr.sums[p.id] is not None and (tr, p.id) in loaded for tr in run.trace for p in fed)
    assert report.spikes > 0 and report.logits == 3


def mbe_chain_program():
    """``in -> m0 -> m1 -> m2 -> out`` (MBE units with ``exp2``, no and ``invsqrt`` splits) at T = 2
    on a 1 x 2 array (seed 2): core 0 loads ``m0`` (5 units) then ``m2`` (4 units) over it, so ``m2``
    sees ``m0``'s membrane words, shift words and tables unless its load replaces them."""
    rng = np.random.default_rng(2)
    graph, x = runnable(lambda r: mbe_chain_graph(r, 2), rng, (1, 4))
    program = compile(graph, hw_of(1, 2, neurons=32, lanes=4, **mbe_core()))
    assert program.plan.mode == "swap"
    pops = [[program.pieces[pid].population for pid in tl] for tl in program.plan.timeline]
    assert pops == [["m0", "m2"], ["m1", "out"]] and [p.n for p in program.pieces[:3]] == [5, 4, 4]
    return program, x[0]


def mbe_chain_graph(rng, T: int) -> SNNGraph:
    """``in -> m0 -> m1 -> m2 -> out``, each MBE population of 3 to 5 units."""
    pops, projs = [InputPopulation("in", (4,), value_bits=3)], []
    prev, n_prev = "in", 4
    for i, split in enumerate(("exp2", "none", "invsqrt")):
        n = int(rng.integers(3, 6))
        pops.append(split_pop(f"m{i}", n, T, rng, split))
        projs.append(DenseProjection(prev, f"m{i}", rng.integers(-2, 4, (n, n_prev))))
        prev, n_prev = f"m{i}", n
    pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
    projs.append(DenseProjection(prev, "out", rng.integers(-2, 3, (3, n_prev))))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=T, v_bits=V_BITS)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_an_mbe_table_in_dram_is_reported_at_the_pieces_first_output():
    """Bit 1 of basis 0's offset ``C_0`` flipped in the DRAM copy of ``m2``'s tables (loaded over
    ``m0``'s on core 0): ``U = clip(X) - C_0`` differs, so the first mismatch is a basis membrane at
    ``m2``'s first output step; every step before it matches, ``m2``'s input window included, where
    its basis blocks and output shifts must be the zeros its load wrote over ``m0``'s words."""
    program, x = mbe_chain_program()
    plan = swap_plan(program)
    p = plan.contexts[0][1]
    assert p.population == "m2" and p.kind == MBE
    recs = [plan.record(0, 1, i) for i in range(plan.n_rec[0][1])]
    table = [i for i, r in enumerate(recs) if r[0] == SEL_TABLE]
    offset = table[p.bases * p.timesteps]  # the offset words follow the (basis, step) rows
    mask = (1 << V_BITS) - 1
    assert recs[offset][2] & mask == int(p.params[p.n + p.bases * p.timesteps][0]) & mask
    report = cosim_array(program, x, dram_flip=(plan.first_rec[0][1] + offset, SEL_BITS + plan.addr_bits + 1))
    assert not report.ok
    m = report.mismatches[0]
    first_out = program.graph.schedule()["m2"].out_start
    assert first_out > plan.live_start[0][1]  # m2's input window is scored first
    assert (m["step"], m["core"], m["what"]) == (first_out, 0, "membrane"), report.format()
    assert m["neuron"] >= 4  # a basis block's word, not X's


@pytest.mark.parametrize("which", ["product_into_mbe", "mbe_chain"])
def test_the_dram_records_of_mbe_and_graded_pieces(which):
    """What a load writes (no simulation): an MBE piece's tables, its ``X`` and basis blocks (zeros,
    with the shift words beside them), a graded product's payload-sum words (zeros)."""
    program, _ = chain_program("mbe") if which == "product_into_mbe" else mbe_chain_program()
    plan = swap_plan(program)
    lanes, vb = 4, V_BITS
    assert plan.data_bits >= lanes * (vb + 7)  # membrane records carry 7-bit shift words
    for k, pieces in plan.contexts.items():
        for j, p in enumerate(pieces):
            recs = [plan.record(k, j, i) for i in range(plan.n_rec[k][j])]
            groups = -(-p.n // lanes)
            mem = [r for r in recs if r[0] == SEL_MEMBRANE]
            if p.kind == MBE:  # mbe: X and one block per basis, all zero, and the table words in order
                assert [a for _, a, _ in mem] == list(range((p.bases + 1) * groups)) and not any(d for *_, d in mem)
                table = [d for s, _, d in recs if s == SEL_TABLE]
                assert len(table) == len(p.params) - p.n > 0
            else:
                assert len(mem) == groups and not any(s == SEL_TABLE for s, *_ in recs)
            if p.graded_sums:  # the payload sums start at zero
                syn = [d for s, _, d in recs if s == SEL_SYNAPSE]
                assert len(syn) > 0 and not any(syn)
            assert -(-len(recs) // plan.ports) < plan.duration[k][j]  # ports records a cycle within the transfer


def pooled_graph(rng, T: int) -> SNNGraph:
    """``in -> m0 -> m (1, 4, 4) -> mx`` (a graded 2 x 2 max-pool of ``m``'s payloads, four outputs)
    ``-> m2 -> out``; ``m0``, ``m`` and ``m2`` MBE units (no split), ``m``'s payloads beyond int8."""
    m0, base, m2 = split_pop("m0", 4, T, rng), split_pop("m", 16, T, rng), split_pop("m2", 4, T, rng)
    gain = int(rng.integers(20, 60))
    m = dataclasses.replace(base, shape=(1, 4, 4), intensity=base.intensity * gain, out_bias=base.out_bias * gain)
    pops = (
        InputPopulation("in", (5,), value_bits=3),
        m0,
        m,
        MaxPoolPopulation("mx", (1, 2, 2)),
        m2,
        OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)),
    )
    projs = (
        DenseProjection("in", "m0", rng.integers(-2, 4, (4, 5))),
        DenseProjection("m0", "m", rng.integers(-2, 4, (16, 4))),
        PoolProjection("m", "mx", kernel=2, stride=2),
        DenseProjection("mx", "m2", rng.integers(-2, 3, (4, 4))),
        DenseProjection("m2", "out", rng.integers(-2, 3, (3, 4))),
    )
    return SNNGraph(pops, projs, timesteps=T, v_bits=V_BITS)


def pooled_program():
    """The pooled chain at T = 2 on a 2 x 2 array of 32-neuron, 4-lane cores (seed 2): core 0 loads
    ``m0`` then ``mx`` over it, so ``mx``'s payload sums start as ``m0``'s synapse words unless its
    load writes them to zero."""
    rng = np.random.default_rng(2)
    graph, x = runnable(lambda r: pooled_graph(r, 2), rng, (1, 5))
    program = compile(graph, hw_of(2, 2, neurons=32, lanes=4, **mbe_core()))
    assert program.plan.mode == "swap"
    pops = [[program.pieces[pid].population for pid in tl] for tl in program.plan.timeline]
    assert pops == [["m0", "mx"], ["m", "out"], ["m"], ["m2"]]
    return program, x[0]


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_graded_max_pool_loaded_over_an_mbe_piece_matches_the_simulator():
    """Every step's cycles and DRAM stall, the max-pool's ``M_prev`` (its membranes), payload rows and
    running payload sums at every barrier while it is loaded, and the logits."""
    program, x = pooled_program()
    (pool,) = [p for p in program.pieces if p.population == "mx"]
    init = piece_init(program, pool.id)
    assert pool.kind == "maxpool" and init.graded_sums
    run = Simulator(program, trace=True).run(x)
    live = program.plan.live
    steps = range(int(live[pool.id, 0]), int(live[pool.id, 1]))
    assert any(np.any(run.trace[t].sums[pool.id]) for t in steps)  # non-zero sums to compare
    assert any(np.any(run.trace[t].spikes[pool.id]) for t in steps if run.trace[t].spikes[pool.id] is not None)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == len(run.trace)
    assert report.stall_cycles == int(run.step_stall.sum()) > 0
    loaded = [(tr, p.id) for tr in run.trace for p in program.pieces if live[p.id, 0] <= tr.step < live[p.id, 1]]
    assert report.membranes == sum(len(tr.membranes[pid]) for tr, pid in loaded)
    assert report.sums == sum(len(tr.sums[pid]) for tr, pid in loaded if tr.sums[pid] is not None)
    assert report.spikes == sum(len(tr.spikes[pid]) for tr, pid in loaded if tr.spikes[pid] is not None)
    assert report.logits == 3


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_max_pool_loaded_without_zeroing_its_payload_sums_is_reported_at_its_first_step():
    """The max-pool's load without its zero payload-sum records (each replaced by a repeat of its
    first register record, so the transfer keeps its records and cycles): its sums keep ``m0``'s
    synapse words, so its first live step reports them, and nothing before."""
    program, x = pooled_program()
    plan = swap_plan(program)
    p = plan.contexts[0][1]
    assert p.population == "mx"
    recs = [plan.record(0, 1, i) for i in range(plan.n_rec[0][1])]
    zeros = [i for i, r in enumerate(recs) if r[0] == SEL_SYNAPSE]
    assert len(zeros) == 4 and not any(recs[i][2] for i in zeros)  # kernel**2 words of lanes sums, zero
    assert recs[0][0] == SEL_REGS  # the registers come first
    first = plan.first_rec[0][1]
    for i in zeros:
        plan.records[first + i] = plan.records[first]
    report = cosim_array(program, x, inits=plan)
    assert not report.ok
    first = report.mismatches[0]
    assert (first["step"], first["core"]) == (plan.live_start[0][1], 0), report.format()
    assert any(m["what"].startswith("running sum") for m in report.mismatches if m["step"] == first["step"])
