"""The MBE ViT's graph features on the hardware (docs/architecture.md sections 4.3, 4.5, 7):
exponent splits with output bias and shift, graded products (MBE payloads as operands, MBE
and output targets), and MBE inputs that arrive before the input window."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mbe_hardware import assert_sim_equals_executor

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.models.errors import GraphError
from spikeforge.models.executor import run_snn
from spikeforge.models.graph import (
    DenseProjection,
    InputPopulation,
    MBEPopulation,
    OutputPopulation,
    ProductProjection,
    SNNGraph,
)

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


def product_graph(rng, T, target, shape_kind, same, split, early, delay_b=0):
    """Two MBE operand populations (or one, twice) -> product -> MBE target (-> out) or the output.

    ``early``: operand ``b`` is fed by operand ``a`` (it fires one window later), so ``a``'s
    payloads reach an MBE target a window before ``b``'s.
    """
    a_idx, b_idx, n_out, n_a, n_b = product_indices(rng, shape_kind, 4, 4, same)
    n_in = 4
    pops = [InputPopulation("in", (n_in,), value_bits=3)]
    pops.append(split_pop("a", n_a, T, rng, split, small=True))
    projs = [DenseProjection("in", "a", rng.integers(-3, 4, (n_a, n_in)))]
    src_b = "a"
    if not same:
        src_b = "b"
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
    assert_sim_equals_executor(compile(graph, hw), x)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 4),
    target=st.sampled_from(["mbe", "output"]),
    shape_kind=st.sampled_from(["matmul", "elementwise", "broadcast"]),
    same=st.booleans(),
    split=st.sampled_from(SPLITS),
    early=st.booleans(),
    lanes=st.sampled_from([1, 2, 4]),
    shape=st.sampled_from([(1, 1), (2, 2), (4, 4)]),
)
def test_graded_products_simulate_exactly(seed, T, target, shape_kind, same, split, early, lanes, shape):
    rng = np.random.default_rng(seed)
    early = early and target == "mbe" and not same

    def make(r):
        return product_graph(r, T, target, shape_kind, same, split, early, delay_b=0)

    graph, x = runnable(make, rng, (2, 4))
    hw = hw_of(*shape, neurons=32, lanes=fit_lanes(lanes, 32), **mbe_core())
    program = compile(graph, hw)
    fed = [p for p in program.pieces if any(s.kind == "product_a" for s in p.slots)]
    assert fed and {p.kind for p in fed} == {"mbe" if target == "mbe" else "output"}
    assert_sim_equals_executor(program, x)
