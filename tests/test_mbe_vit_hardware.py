"""The MBE ViT's graph features on the hardware (docs/architecture.md sections 4.3, 4.5, 7):
exponent splits with output bias and shift, graded products (MBE payloads as operands, MBE
and output targets), and MBE inputs that arrive before the input window."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.mapping.pieces import MappingError
from spikeforge.models.errors import GraphError
from spikeforge.models.executor import run_snn
from spikeforge.models.graph import (
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    MBEPopulation,
    NeuronPopulation,
    OutputPopulation,
    ProductProjection,
    SNNGraph,
)
from spikeforge.sim import Simulator

V_BITS = 32
SPLITS = ("none", "exp2", "inv", "invsqrt")


def mbe_core(**core):
    return {"neuron_models": ("if", "dif", "mbe"), "v_bits": V_BITS} | core


def split_pop(name, n, T, rng, split="none", bases=2, small=False, bias=True):
    """Random valid MBE units with an exponent split, output bias and shift.

    The tables are halving-like over the split's basis input range: basis ``b`` starts at an
    offset near the bottom of the range and its thresholds halve step by step (a random jitter
    keeps them distinct). ``small`` keeps the output shift <= 1 (product operands).
    """
    bits = int(rng.integers(2, 6))
    if split == "exp2":
        x_lo = int(rng.integers(-24, 8))
        x_hi = x_lo + int(rng.integers(0, 40))
    elif split in ("inv", "invsqrt"):
        x_lo = int(rng.integers(1, 9))
        x_hi = x_lo + int(rng.integers(0, 600))
    else:
        x_lo, x_hi = -40, 40
    exp_bias = int(rng.integers(-2, 3)) if split == "invsqrt" else 0
    probe = MBEPopulation(
        name,
        (n,),
        vth=np.ones((bases, T), int),
        reset=np.ones((bases, T), int),
        intensity=np.zeros((bases, T), int),
        offset=np.zeros(bases, int),
        bias=np.zeros(n, int),
        x_lo=x_lo,
        x_hi=x_hi,
        split=split,
        split_bits=bits if split != "none" else 0,
        exp_bias=exp_bias,
    )
    u_lo, u_hi = probe.basis_input_range()
    span = max(2, u_hi - u_lo + 1)
    sh_lo, sh_hi = probe.shift_range()
    top = 1 if small else 4
    shift_base = int(rng.integers(-2, top + 1)) - max(sh_hi, 0) if split != "none" else int(rng.integers(-1, top))
    halving = np.maximum(1, span >> (np.arange(T) + 1))
    vth = np.maximum(1, halving[None, :] + rng.integers(-1, 2, (bases, T)))
    return MBEPopulation(
        name,
        (n,),
        vth=vth,
        reset=vth,
        intensity=rng.integers(-4, 5, (bases, T)),
        offset=u_lo + rng.integers(-2, 3, bases),
        bias=rng.integers(-3, 4, n) if bias else np.zeros(n, int),
        x_lo=x_lo,
        x_hi=x_hi,
        out_bias=int(rng.integers(-3, 4)),
        split=split,
        split_bits=bits if split != "none" else 0,
        exp_bias=exp_bias,
        shift_base=shift_base,
    )


def split_graph(rng, T, splits, n_in=5, width=6, delay=0):
    """in -> m0 -> m1 -> out, with ``in -> m1`` arriving early (one window before m0's output)
    and every MBE population using the given splits."""
    pops = [InputPopulation("in", (n_in,), value_bits=3)]
    n0, n1 = width, width + int(rng.integers(-2, 3))
    pops.append(split_pop("m0", n0, T, rng, splits[0]))
    pops.append(split_pop("m1", n1, T, rng, splits[1]))
    pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
    projs = (
        DenseProjection("in", "m0", rng.integers(-1, 4, (n0, n_in))),
        DenseProjection("m0", "m1", rng.integers(-2, 3, (n1, n0))),
        DenseProjection("in", "m1", rng.integers(-3, 4, (n1, n_in)), delay=delay),  # early: X holds it
        DenseProjection("m1", "out", rng.integers(-2, 3, (3, n1))),
    )
    return SNNGraph(tuple(pops), projs, timesteps=T, v_bits=V_BITS)


def product_indices(rng, shape_kind, n_a, n_b, same):
    """``(a_index, b_index, H*I*J)`` for a matmul-, elementwise- or broadcast-shaped product."""
    if shape_kind == "matmul":
        h, i, c, j = (int(v) for v in rng.integers(1, 4, 4))
    elif shape_kind == "elementwise":  # out[h] = a[h] * b[h]
        h, i, c, j = int(rng.integers(2, 7)), 1, 1, 1
    else:  # broadcast: a row scale, out[h, j] = s[h] * x[h, j]
        h, i, c, j = int(rng.integers(1, 4)), 1, 1, int(rng.integers(2, 4))
    need_a, need_b = h * i * c, h * c * j
    if same:
        n_a = n_b = max(need_a, need_b, n_a)
    else:
        n_a, n_b = max(n_a, need_a), max(n_b, need_b)
    a = rng.permutation(n_a)[:need_a].reshape(h, i, c)
    b = rng.permutation(n_b)[:need_b].reshape(h, c, j)
    if shape_kind == "elementwise" and same:
        b = a.reshape(h, 1, 1).copy()  # a square: both operands name the same unit
    return a, b, h * i * j, n_a, n_b


def product_graph(rng, T, target, shape_kind, same, split, early, delay_b=0, spiking_b=False):
    """Two MBE operand populations (or one, twice) -> product -> MBE target (-> out) or the output.

    ``early``: operand ``b`` is fed by operand ``a`` (it fires one window later), so ``a``'s
    payloads reach an MBE target a window before ``b``'s. ``spiking_b``: operand ``b`` is DIF
    neurons (spikes times payloads).
    """
    a_idx, b_idx, n_out, n_a, n_b = product_indices(rng, shape_kind, 4, 4, same)
    n_in = 4
    pops = [InputPopulation("in", (n_in,), value_bits=3)]
    pops.append(split_pop("a", n_a, T, rng, split, small=True))
    projs = [DenseProjection("in", "a", rng.integers(-1, 4, (n_a, n_in)))]
    src_b = "a"
    if not same:
        src_b = "b"
        if spiking_b:
            th = rng.integers(1, 8, n_b)
            pops.append(NeuronPopulation("b", (n_b,), threshold=th, bias=np.zeros(n_b, int), v0=th // 2, delay=T - 1))
        else:
            pops.append(split_pop("b", n_b, T, rng, split, small=True))
        feed = "a" if early else "in"
        n_feed = n_a if early else n_in
        projs.append(DenseProjection(feed, "b", rng.integers(-2, 3, (n_b, n_feed))))
    out_index = rng.permutation(n_out).reshape(a_idx.shape[0], a_idx.shape[1], b_idx.shape[2])
    w = int(rng.choice([-2, -1, 1, 2]))
    if target == "mbe":
        tsplit = str(rng.choice(SPLITS))
        pops.append(split_pop("p", n_out, T, rng, tsplit, bias=False))
        projs.append(ProductProjection("a", src_b, "p", a_idx, b_idx, out_index, weight=w, delay_b=delay_b))
        pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
        projs.append(DenseProjection("p", "out", rng.integers(-2, 3, (3, n_out))))
    elif target == "neuron":  # IF/DIF neurons (a product piece) integrating payload products
        pops.append(
            NeuronPopulation(
                "p",
                (n_out,),
                threshold=rng.integers(1, 60, n_out),
                bias=rng.integers(-3, 4, n_out),
                v0=rng.integers(0, 10, n_out),
                delay=T - 1,
            )
        )
        projs.append(ProductProjection("a", src_b, "p", a_idx, b_idx, out_index, weight=w))
        pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
        projs.append(DenseProjection("p", "out", rng.integers(-2, 3, (3, n_out))))
    else:
        pops.append(OutputPopulation("out", (n_out,), bias=rng.integers(-5, 5, n_out)))
        projs.append(ProductProjection("a", src_b, "out", a_idx, b_idx, out_index, weight=w))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=T, v_bits=V_BITS)


def runnable(make, rng, x_shape, tries=30):
    """A graph from ``make(rng)`` that the executor runs (no accumulator leaves v_bits) and an input."""
    for _ in range(tries):
        try:
            graph = make(rng)
            x = rng.integers(0, 8, x_shape)
            run_snn(graph, x)
            return graph, x
        except GraphError:
            continue
    raise AssertionError("no valid random graph in 30 tries")


def assert_exact(program, x):
    """Simulator == executor: every raster (payloads, spikes), the logits, the spikes counted (MBE
    basis spikes and IF/DIF spikes) and the clipped units."""
    ref = run_snn(program.graph, x)
    sim = Simulator(program)
    for i in range(len(x)):
        run = sim.run(x[i], record=True)
        for name, raster in run.rasters.items():
            np.testing.assert_array_equal(raster, ref.rasters[name][:, i], err_msg=f"{name}, sample {i}")
        np.testing.assert_array_equal(run.logits, ref.logits[i])
    counted = [p.name for p in program.graph.populations if p.kind in ("mbe", "neuron")]
    assert sim.totals().spikes == sum(int(ref.counts[name].sum()) for name in counted)
    assert int(sim.piece_clipped.sum()) == sum(int(c.sum()) for c in ref.clipped.values())
    return sim, ref


def fit_lanes(lanes, neurons, bases=2):
    while (bases + 1) * lanes > neurons:
        lanes //= 2
    return lanes


# --------------------------------------------------------------------------- simulator == executor
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 5),
    splits=st.tuples(st.sampled_from(SPLITS), st.sampled_from(SPLITS)),
    lanes=st.sampled_from([1, 4, 16]),
    axons=st.sampled_from([4, 256]),
    shape=st.sampled_from([(1, 1), (2, 2), (4, 4)]),
    delay=st.integers(0, 2),
)
def test_splits_and_early_inputs_simulate_exactly(seed, T, splits, lanes, axons, shape, delay):
    rng = np.random.default_rng(seed)
    delay %= T  # in -> m1 arrives at 1 + delay, m0 -> m1 at T + 1
    graph, x = runnable(lambda r: split_graph(r, T, splits, delay=delay), rng, (2, 5))
    sched = graph.schedule()
    assert sched["in"].out_start + 1 + delay < sched["m1"].in_start  # in -> m1 does arrive early
    hw = hw_of(*shape, neurons=64, lanes=fit_lanes(lanes, 64), axons=axons, **mbe_core())
    assert_exact(compile(graph, hw), x)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 4),
    target=st.sampled_from(["mbe", "output", "neuron"]),
    shape_kind=st.sampled_from(["matmul", "elementwise", "broadcast"]),
    same=st.booleans(),
    split=st.sampled_from(SPLITS),
    early=st.booleans(),
    lanes=st.sampled_from([1, 2, 4]),
    shape=st.sampled_from([(1, 1), (2, 2), (4, 4)]),
    delay_b=st.integers(0, 3),
    spiking_b=st.booleans(),
)
def test_graded_products_simulate_exactly(
    seed, T, target, shape_kind, same, split, early, lanes, shape, delay_b, spiking_b
):
    rng = np.random.default_rng(seed)
    early = early and target == "mbe" and not same
    delay_b = delay_b if target == "mbe" else 0  # operands of an MBE target may arrive in any windows

    def make(r):
        return product_graph(r, T, target, shape_kind, same, split, early, delay_b, spiking_b and not same)

    graph, x = runnable(make, rng, (2, 4))
    hw = hw_of(*shape, neurons=32, lanes=fit_lanes(lanes, 32), **mbe_core())
    program = compile(graph, hw)
    fed = [p for p in program.pieces if any(s.kind == "product_a" for s in p.slots)]
    assert fed and {p.kind for p in fed} == {{"mbe": "mbe", "output": "output", "neuron": "product"}[target]}
    assert_exact(program, x)


@pytest.mark.parametrize("shape", [(1, 1), (4, 4)])
def test_every_plan_mode_runs_the_features_exactly(shape):
    """One graph with all three features: resident on 4 x 4, rounds on 1 x 1 (the plan modes the
    MBE path takes); the pieces of an MBE population with early inputs are live, and run rounds,
    from the first arrival."""
    rng = np.random.default_rng(11)
    graph, x = runnable(lambda r: product_graph(r, 3, "mbe", "matmul", False, "inv", True), rng, (2, 4))
    program = compile(graph, hw_of(*shape, neurons=32, lanes=4, **mbe_core()))
    assert program.plan.mode == ("rounds" if shape == (1, 1) else "resident")
    first = graph.schedule()["a"].out_start + 1  # a's payloads reach p a window before b's
    assert first < graph.schedule()["p"].in_start
    for p in program.pieces:
        if p.population == "p":
            assert program.plan.live[p.id, 0] == first
            assert program.round_steps(p).start == first
    assert_exact(program, x)


def test_swap_mode_loads_a_piece_with_early_inputs_before_its_first_arrival():
    """Swap mode: in -> m0 -> m1 with in -> m1 early; on a 1 x 2 array m1 is live (so loaded, and
    the step waits for its load) from step 1, when in's values first reach it, not from its input
    window; the run is exact."""
    rng = np.random.default_rng(12)
    graph, x = runnable(lambda r: split_graph(r, 2, ("exp2", "invsqrt"), width=4), rng, (1, 5))
    program = compile(graph, hw_of(1, 2, neurons=64, lanes=4, **mbe_core()))
    assert program.plan.mode == "swap"
    (m1,) = [p for p in program.pieces if p.population == "m1"]
    assert program.plan.live[m1.id, 0] == 1 < graph.schedule()["m1"].in_start  # in's values arrive at step 1
    assert_exact(program, x)


# --------------------------------------------------------------------------- by hand
def test_split_payloads_and_cycles_by_hand():
    """One unit, inv split with b = 3, shift_base = 5, B = 2, one basis (C = 0), T = 2.

    X = 12 (bit length L = 4): u = floor(12 * 2**(3 - 4)) = 6, sh = 5 - 4 = 1.
    k = 0: U = 6 >= VTH 4: fires, U = 2, P = (B + DI) * 2 = (2 + 3) * 2 = 10.
    k = 1: U = 2 >= VTH 2: fires, U = 0, P = -5 * 2 = -10.
    Phase F (section 4.5): the split costs no cycles: ceil(1/lanes) + N ceil(1/lanes) = 2 at k = 0.
    """
    pop = MBEPopulation(
        "m",
        (1,),
        vth=np.array([[4, 2]]),
        reset=np.array([[4, 2]]),
        intensity=np.array([[3, -5]]),
        offset=np.array([0]),
        bias=np.array([0]),
        x_lo=1,
        x_hi=100,
        out_bias=2,
        split="inv",
        split_bits=3,
        shift_base=5,
    )
    graph = SNNGraph(
        (InputPopulation("in", (1,), value_bits=4), pop, OutputPopulation("out", (1,), bias=np.zeros(1, int))),
        (IdentityProjection("in", "m"), DenseProjection("m", "out", np.ones((1, 1), int))),
        timesteps=2,
        v_bits=V_BITS,
    )
    program = compile(graph, hw_of(1, 1, neurons=32, lanes=4, **mbe_core()))
    sim = Simulator(program, trace=True)
    run = sim.run(np.array([6]), record=True)  # X = 6 + 6
    w = graph.schedule()["m"]
    assert run.rasters["m"][w.out_start : w.out_start + 2, 0].tolist() == [10, -10]
    assert run.logits.tolist() == [0]
    (piece,) = [p for p in program.pieces if p.kind == "mbe"]
    fire = [tr.fire_cycles[piece.id] for tr in run.trace]
    assert fire[w.in_start : w.out_start + 2] == [1, 2, 1]
    np.testing.assert_array_equal(run_snn(graph, np.array([[6]])).rasters["m"][:, 0], run.rasters["m"])
    # the shift word (7 bits per unit): written once at k = 0, read at each of the T = 2 output steps
    unshifted = dataclasses.replace(pop, split="none", split_bits=0, shift_base=0)
    plain = SNNGraph((graph.populations[0], unshifted, graph.populations[2]), graph.projections, 2, v_bits=V_BITS)
    ref = Simulator(compile(plain, hw_of(1, 1, neurons=32, lanes=4, **mbe_core())))
    ref.run(np.array([6]))
    a, b = sim.totals(), ref.totals()
    assert a.sram_write_bits["membrane"] - b.sram_write_bits["membrane"] == 7
    assert a.sram_read_bits["membrane"] - b.sram_read_bits["membrane"] == 2 * 7


def test_a_graded_product_event_by_hand():
    """Section 4.3 with payloads: operand a's payload p at (i, c) adds w * p * Bbar[c, j] to every
    j of the block (m = |J| multiply-accumulates, ceil(m/lanes) + 1 cycles), then Abar[i, c] += p;
    the running sums are v_bits words: (m + 1) * v_bits read, v_bits written."""
    from spikeforge.sim import kernels as K
    from spikeforge.sim.lowering import P, S

    rng = np.random.default_rng(13)
    graph, _ = runnable(lambda r: product_graph(r, 2, "mbe", "matmul", False, "none", False), rng, (1, 4))
    lanes = 2
    program = compile(graph, hw_of(2, 2, neurons=32, lanes=lanes, **mbe_core()))
    sim = Simulator(program)
    low = sim.low
    (piece,) = [p for p in program.pieces if p.population == "p"][:1]
    row = low.pieces[piece.id]
    k = next(q for q in range(row[P["slot0"]], row[P["slot0"]] + row[P["nslots"]]) if low.slots[q, S["kind"]] == 4)
    g = piece.geometry
    proj = graph.projections[piece.slots[0].proj]
    ni, nj, nc = g["i1"] - g["i0"], g["j1"] - g["j0"], proj.a_index.shape[2]
    state = np.zeros(low.total_state, np.int64)
    counts = np.zeros(low.total_counts, np.int64)
    base = row[P["pc_off"]]
    bbar = rng.integers(-50, 50, (nc, nj))
    counts[base + ni * nc : base + ni * nc + nc * nj] = bbar.reshape(-1)
    i, c, payload = g["i0"], nc - 1, -37
    s = int(proj.a_index[g["h"], i, c])
    cost = np.zeros(1, np.int64)
    stats = np.zeros(len(K.STAT_FIELDS), np.int64)
    vb = program.hardware.core.v_bits
    K.deliver(
        np.array([piece.id]),
        np.array([k]),
        np.array([s]),
        np.array([payload]),
        np.array([2], np.int8),
        low.pieces,
        low.slots,
        low.neurons,
        low.weights,
        low.inverse,
        low.pop_off,
        low.loc_local,
        state,
        counts,
        lanes,
        program.hardware.core.weight_bits,
        vb,
        program.hardware.core.count_bits,
        cost,
        np.zeros(len(program.pieces), np.int64),
        np.zeros(len(program.pieces), np.int64),
        stats,
    )
    off = row[P["off"]]
    np.testing.assert_array_equal(state[off : off + nj], proj.weight * payload * bbar[c])  # row i = 0 of the block
    assert counts[base + c] == payload  # Abar[0, c]
    assert cost[0] == -(-nj // lanes) + 1
    assert stats[K.ST["macs"]] == stats[K.ST["payload_macs"]] == nj
    assert stats[K.ST["cnt_read"]] == (nj + 1) * vb and stats[K.ST["cnt_write"]] == vb


# --------------------------------------------------------------------------- refusals
def test_product_refusals_name_the_limit():
    rng = np.random.default_rng(14)
    big = split_pop("a", 4, 4, rng)
    wide = MBEPopulation(
        "a",
        (4,),
        vth=big.vth,
        reset=big.reset,
        intensity=np.full((2, 4), 8000),  # 16000 per step fits 16 bits, 64000 over the window does not
        offset=big.offset,
        bias=big.bias,
        x_lo=big.x_lo,
        x_hi=big.x_hi,
    )
    idx = np.arange(4).reshape(1, 2, 2)
    graph = SNNGraph(
        (InputPopulation("in", (4,)), wide, OutputPopulation("out", (4,), bias=np.zeros(4, int))),
        (IdentityProjection("in", "a"), ProductProjection("a", "a", "out", idx, idx, idx)),
        timesteps=4,
        v_bits=16,
    )
    with pytest.raises(MappingError, match="running sum of the payloads of its product operand 'a' can reach 64000"):
        compile(graph, hw_of(1, 1, v_bits=16, neurons=32, lanes=4, neuron_models=("if", "mbe")))
    mixed = SNNGraph(
        (
            InputPopulation("in", (4,)),
            split_pop("a", 4, 4, rng),
            split_pop("p", 4, 4, rng),
            OutputPopulation("out", (1,), bias=np.zeros(1, int)),
        ),
        (
            IdentityProjection("in", "a"),
            ProductProjection("a", "a", "p", idx, idx, idx),
            IdentityProjection("in", "p", delay=3),
            DenseProjection("p", "out", np.ones((1, 4), int)),
        ),
        timesteps=4,
        v_bits=V_BITS,
    )
    with pytest.raises(MappingError, match="mixes a product with other projections"):
        compile(mixed, hw_of(1, 1, neurons=32, lanes=4, **mbe_core()))


def test_split_parameters_are_in_the_image_and_a_wide_exp_bias_is_refused():
    rng = np.random.default_rng(17)
    pop = dataclasses.replace(split_pop("m0", 4, 2, rng, "invsqrt"), exp_bias=-9)
    graph = split_graph(rng, 2, ("none", "none"), width=4)
    graph = SNNGraph((graph.populations[0], pop, *graph.populations[2:]), graph.projections, 2, v_bits=12)
    program = compile(graph, hw_of(1, 1, neurons=64, lanes=4, **mbe_core(v_bits=16)))
    piece = next(p for p in program.pieces if p.population == "m0")
    fields = program.images(piece.id)["params"].fields
    n, nb = piece.n, pop.bases
    code = 3 | pop.split_bits << 2 | -9 << 8
    assert fields[n + nb * 2].tolist() == [pop.offset[0], code, pop.shift_base]
    assert fields[-1].tolist() == [pop.x_lo, pop.x_hi, pop.out_bias]
    with pytest.raises(MappingError, match="exp_bias = -9; the parameter field that holds it .* keeps 4 signed bits"):
        compile(graph, hw_of(1, 1, neurons=64, lanes=4, **mbe_core(v_bits=12)))


def test_the_rtl_builds_every_feature():
    """The RTL core builds every piece of the features (co-simulated in ``tests/test_rtl_mbe_vit.py``):
    splits and early inputs, graded products into MBE, output and IF/DIF targets, the graded max-pool;
    what it still refuses (a graded product on a swap core) is tested there."""
    from spikeforge.rtl.piece import piece_init

    rng = np.random.default_rng(15)
    hw = hw_of(4, 4, neurons=32, lanes=4, **mbe_core())
    graphs = [runnable(lambda r: split_graph(r, 2, ("inv", "none")), rng, (1, 5))[0]]
    for target in ("mbe", "output", "neuron"):
        make = lambda r, t=target: product_graph(r, 2, t, "matmul", False, "exp2", t == "mbe")  # noqa: E731
        graphs.append(runnable(make, rng, (1, 4))[0])
    graphs.append(runnable(lambda r: pool_graph(r, 2, 2, 1, "none"), rng, (1, 5))[0])
    for graph in graphs:
        program = compile(graph, hw)
        inits = [piece_init(program, p.id) for p in program.pieces]
        assert len(inits) == len(program.pieces)


def test_a_v_bits_32_mbe_array_takes_graded_products_at_t16():
    """configs/array-8x8-mbe.toml with v_bits = 32 (the MBE ViT's core): a graded product at T = 16
    maps (its payload sums are v_bits words; spike counts would need count_bits >= 5) and runs exactly."""
    from spikeforge.mapping import load_hardware

    hw = load_hardware("configs/array-8x8-mbe.toml")
    hw = dataclasses.replace(hw, core=dataclasses.replace(hw.core, v_bits=32))
    rng = np.random.default_rng(16)
    graph, x = runnable(lambda r: product_graph(r, 16, "mbe", "matmul", False, "exp2", True), rng, (2, 4))
    program = compile(graph, hw)
    assert program.plan.mode == "resident" and hw.core.count_bits == 4
    fed = [p for p in program.pieces if program.has_product(p)]
    assert fed and all(program.synapse_bits(p) == program.stored_synapses(p) * 32 for p in fed)
    sim, _ = assert_exact(program, x)
    assert sim.totals().payload_macs > 0


# --------------------------------------------------------------------------- graded max-pool (4.4)
def pool_graph(rng, T, kernel, channels, split, width_to_out=True):
    """in -> m (C, H, W) MBE -> maxpool of payload sums -> dense -> m2 (MBE) -> out."""
    from spikeforge.models.graph import MaxPoolPopulation, PoolProjection

    h = w = kernel * int(rng.integers(1, 3))
    n = channels * h * w
    base = split_pop("m", n, T, rng, split)
    gain = int(rng.integers(20, 60))  # payloads beyond int8, as real ones are
    m = dataclasses.replace(
        base, shape=(channels, h, w), intensity=base.intensity * gain, out_bias=base.out_bias * gain
    )
    pooled = (channels, h // kernel, w // kernel)
    np_ = int(np.prod(pooled))
    m2 = split_pop("m2", 4, T, rng, "none")
    pops = (
        InputPopulation("in", (5,), value_bits=3),
        m,
        MaxPoolPopulation("mx", pooled),
        m2,
        OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)),
    )
    projs = (
        DenseProjection("in", "m", rng.integers(-2, 4, (n, 5))),
        PoolProjection("m", "mx", kernel=kernel, stride=kernel),
        DenseProjection("mx", "m2", rng.integers(-2, 3, (4, np_))),
        DenseProjection("mx", "out", rng.integers(-2, 3, (3, np_))),
    )
    return SNNGraph(pops, projs, timesteps=T, v_bits=V_BITS)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 5),
    kernel=st.sampled_from([1, 2, 3]),
    channels=st.integers(1, 3),
    split=st.sampled_from(SPLITS),
    lanes=st.sampled_from([1, 4]),
    shape=st.sampled_from([(1, 1), (2, 2), (4, 4)]),
)
def test_graded_max_pools_simulate_exactly(seed, T, kernel, channels, split, lanes, shape):
    rng = np.random.default_rng(seed)
    graph, x = runnable(lambda r: pool_graph(r, T, kernel, channels, split), rng, (2, 5))
    assert graph.graded("mx")
    hw = hw_of(*shape, neurons=64, lanes=fit_lanes(lanes, 64), **mbe_core())
    sim, ref = assert_exact(compile(graph, hw), x)
    assert sim.totals().payload_macs >= 0


def test_graded_max_pool_cycles_and_counts_by_hand():
    """Phase F of a graded max-pool: ceil(n/lanes) * kernel**2 cycles; events add the payload (no MAC)."""
    from spikeforge.models.graph import MaxPoolPopulation, PoolProjection

    T = 2
    ident = MBEPopulation(
        "m",
        (2, 2, 2),
        vth=np.array([[4, 2]]),
        reset=np.array([[4, 2]]),
        intensity=np.array([[4, 2]]),
        offset=np.array([0]),
        bias=np.zeros(8, np.int64),
        x_lo=0,
        x_hi=7,
    )
    graph = SNNGraph(
        (
            InputPopulation("in", (8,), value_bits=3),
            ident,
            MaxPoolPopulation("mx", (2, 1, 1)),
            OutputPopulation("out", (2,), bias=np.zeros(2, np.int64)),
        ),
        (
            DenseProjection("in", "m", np.eye(8, dtype=np.int64)),
            PoolProjection("m", "mx", kernel=2, stride=2),
            DenseProjection("mx", "out", np.eye(2, dtype=np.int64)),
        ),
        timesteps=T,
        v_bits=V_BITS,
    )
    x = np.array([[1, 3, 2, 0, 3, 3, 1, 2]])  # X = T x = 2 x: [2, 6, 4, 0, 6, 6, 2, 4]
    hw = hw_of(1, 1, neurons=64, lanes=1, **mbe_core())
    program = compile(graph, hw)
    sim, ref = assert_exact(program, x)
    # halving units of [0, 8): payloads 4 then 2 per set bit of X; window maxima 6 (=4+2) both
    np.testing.assert_array_equal(ref.logits[0], [6, 6])
    run = Simulator(program, trace=True).run(x[0], record=True)
    mx_piece = next(p.id for p in program.pieces if p.population == "mx")
    window = program.graph.schedule()["mx"]
    fires = [tr.fire_cycles[mx_piece] for tr in run.trace]
    for t, c in enumerate(fires):  # 2 units, 1 lane, kernel 2: 2 * 4 cycles in the window, else none
        assert c == (2 * 4 if window.in_start <= t < window.in_start + T else 0), (t, c)
    # the events: 2 payloads per unit of m that fired, each one accumulate (not a MAC)
    totals = sim.totals()
    payload_events = int((ref.rasters["m"] != 0).sum())
    mx_events = int((ref.rasters["mx"] != 0).sum())
    assert totals.payload_macs == mx_events * 2  # only mx -> out multiplies: one MAC per weight row
    assert totals.synaptic_ops >= payload_events
