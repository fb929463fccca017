"""The MBE ViT as an integer graph: exponent splits, graded products and max-pools, early inputs."""

from __future__ import annotations

import math

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
    InputPopulation,
    MaxPoolPopulation,
    MBEPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolProjection,
    ProductProjection,
    SNNGraph,
)
from spikeforge.models.graph_io import load_graph, save_graph
from spikeforge.models.mbe import MBEError, halving_params
from spikeforge.models.mbe_ops import MBEPrimitives
from spikeforge.models.neurons import bit_length, mbe_split, shift_floor
from spikeforge.models.vit import load_vit, vit_forward
from spikeforge.models.vit_graph import VitGraphOptions, shadow_forward, vit_to_mbe_graph

MBE_CORE = {"neuron_models": ("if", "dif", "mbe"), "v_bits": 32, "weight_bits": 10}


# --------------------------------------------------------------------------- the split, in integers
@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 62) - 1))
def test_bit_length_is_exact(x):
    assert int(bit_length(np.array([x]))[0]) == x.bit_length()


@settings(max_examples=200, deadline=None)
@given(st.integers(-(1 << 40), 1 << 40), st.integers(1, 24), st.integers(-8, 8))
def test_exp2_split_separates_integer_part_and_fraction(x, b, base):
    u, sh = mbe_split(np.array([x]), "exp2", b, 0, base)
    assert 0 <= u[0] < (1 << b)
    assert int(u[0]) + ((int(sh[0]) - base) << b) == x


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1 << 50), st.integers(1, 24), st.integers(-30, 30), st.integers(-8, 8))
def test_inv_and_invsqrt_splits_normalise_the_mantissa(x, b, exp_bias, base):
    length = x.bit_length()
    u, sh = mbe_split(np.array([x]), "inv", b, 0, base)
    assert (1 << (b - 1)) <= u[0] < (1 << b)
    assert int(u[0]) == (x << (b - length) if b >= length else x >> (length - b))
    assert int(sh[0]) == base - length
    u, sh = mbe_split(np.array([x]), "invsqrt", b, exp_bias, base)
    e = length + exp_bias
    assert (1 << (b - 1)) <= u[0] < (1 << (b + 1))
    assert int(sh[0]) == base - (e - (e & 1)) // 2
    # u 2**-b is the mantissa m' of x 2**-(..) with an even exponent: m' 2**(E - p) == x 2**exp_bias
    p = e & 1
    assert abs(int(u[0]) * 2.0 ** (e - p - b) - x * 2.0**exp_bias) <= 2.0 ** (e - p - b) * (1 + 1e-12)


def test_shift_floor_is_floor_of_the_scaled_value():
    x = np.array([-7, -1, 0, 5, 1023], np.int64)
    np.testing.assert_array_equal(shift_floor(x, np.full(5, -2)), np.floor(x / 4).astype(np.int64))
    np.testing.assert_array_equal(shift_floor(x, np.full(5, 3)), x * 8)
    np.testing.assert_array_equal(shift_floor(x, np.full(5, -70)), np.where(x < 0, -1, 0))


# --------------------------------------------------------------------------- split units decode the functions
def _split_graph(prim, split, b, x_lo, x_hi, exp_bias, f_t, shift_base, values, bias=0):
    """input codes -> dense (weight 1) -> one split MBE unit per input -> output (sum of payloads)."""
    T = prim.timesteps
    n = len(values)
    vth, reset, inten = prim.kernels()
    q = 2.0**-b
    unit = MBEPopulation(
        "u",
        (n,),
        vth=np.rint(vth / q).astype(np.int64),
        reset=np.rint(reset / q).astype(np.int64),
        intensity=np.rint(inten * 2.0**f_t).astype(np.int64),
        offset=np.rint(prim.offset / q).astype(np.int64),
        bias=np.full(n, bias, np.int64),
        x_lo=x_lo,
        x_hi=x_hi,
        out_bias=int(round(prim.bias * 2.0**f_t)),
        split=split,
        split_bits=b,
        exp_bias=exp_bias,
        shift_base=shift_base,
    )
    graph = SNNGraph(
        (
            InputPopulation("in", (n,), value_bits=16),
            unit,
            OutputPopulation("out", (n,), bias=np.zeros(n, np.int64)),
        ),
        (
            DenseProjection("in", "u", weight=np.eye(n, dtype=np.int64)),
            DenseProjection("u", "out", weight=np.eye(n, dtype=np.int64)),
        ),
        T,
        v_bits=40,
    )
    return graph


@pytest.fixture(scope="module")
def prims():
    return MBEPrimitives.load(16, 8, fit=False, n_identity=1)


def test_split_units_compute_exp2_inv_and_invsqrt(prims):
    T = 16
    # inv: X = T * code (the input repeats its code every step); 1/X = out * 2**-(f_t + base) / T
    codes = np.array([1, 3, 100, 777, 4095, 65535])
    g = _split_graph(prims.inv, "inv", 16, T, T * 65535, 0, 11, 11, codes)
    out = run_snn(g, codes[None]).logits[0] * 2.0 ** -(11 + 11)
    lsb = 2.0 ** -(11 + 11)  # each of the T payloads is floored once: at most T LSBs low
    # rtol: the N = 8 fit itself (MSE about 1e-5 on [0.5, 1], so a few 1e-3 at worst)
    np.testing.assert_allclose(out, 1.0 / (T * codes), rtol=5e-3, atol=T * lsb)
    # invsqrt with exp_bias: X = T * code represents v = X 2**-6
    g = _split_graph(prims.invsqrt, "invsqrt", 16, T, T * 65535, -6, 11, 11, codes)
    out = run_snn(g, codes[None]).logits[0] * 2.0 ** -(11 + 11)
    np.testing.assert_allclose(out, 1.0 / np.sqrt(T * codes * 2.0**-6), rtol=5e-3, atol=T * lsb)
    # exp2: the input is non-negative, so exponents come from a negative unit bias
    b = 8
    codes = np.array([0, 1, 37, 128, 255, 300, 700])
    bias = -800
    g = _split_graph(prims.exp2, "exp2", b, -(12 << b), (1 << b) - 1, 0, 11, 0, codes, bias)
    assert g.population("u").shift_range() == (-12, 0)
    out = run_snn(g, codes[None]).logits[0] * 2.0**-11
    z = (T * codes + T * bias) * 2.0**-b
    np.testing.assert_allclose(out, 2.0**z, atol=T * 2.0**-11, rtol=2e-3)


def test_bad_split_populations_are_refused():
    base = dict(
        vth=np.ones((1, 4), np.int64),
        reset=np.ones((1, 4), np.int64),
        intensity=np.ones((1, 4), np.int64),
        offset=np.zeros(1, np.int64),
        bias=np.zeros(2, np.int64),
        x_lo=0,
        x_hi=100,
    )
    with pytest.raises(GraphError, match="split must be one of"):
        MBEPopulation("u", (2,), **base, split="log")
    with pytest.raises(GraphError, match="x_lo must be >= 1"):
        MBEPopulation("u", (2,), **base, split="inv", split_bits=8)
    with pytest.raises(GraphError, match="split_bits"):
        MBEPopulation("u", (2,), **base, split="exp2", split_bits=0)
    with pytest.raises(GraphError, match="output shift reaches"):
        MBEPopulation("u", (2,), **{**base, "x_lo": -(1 << 20)}, split="exp2", split_bits=1)


# --------------------------------------------------------------------------- graded products, max-pools, early inputs
def _encoder(name, n, T, lo=0.0, hi=8.0, shape=None):
    """A halving identity encoder of [lo, hi] on X in units 1/(4 T) (input codes 0..31), payloads in 2**-4."""
    p = halving_params(lo, hi, T)
    vth, reset, inten = p.kernels()
    q = 1.0 / 4
    return MBEPopulation(
        name,
        (n,) if shape is None else shape,
        vth=np.rint(vth / q).astype(np.int64),
        reset=np.rint(reset / q).astype(np.int64),
        intensity=np.rint(inten * 16).astype(np.int64),
        offset=np.rint(p.offset / q).astype(np.int64),
        bias=np.zeros(n, np.int64),
        x_lo=0,
        x_hi=int(hi / q),
        out_bias=int(round(p.bias * 16)),
    )


def _payload_totals(run, name):
    return run.rasters[name].sum(axis=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.sampled_from([(2, 3, 4), (1, 4, 1), (3, 1, 2)]))
def test_graded_products_multiply_payload_sums_exactly(seed, T, shape):
    rng = np.random.default_rng(seed)
    hh, ii, cc = shape
    jj = 2
    na, nb = 12, 12
    pops = (
        InputPopulation("in", (8,), value_bits=5),
        _encoder("a", na, T),
        _encoder("b", nb, T),
        OutputPopulation("out", (hh * ii * jj,), bias=np.zeros(hh * ii * jj, np.int64)),
    )
    a_idx = rng.integers(0, na, (hh, ii, cc))
    b_idx = rng.integers(0, nb, (hh, cc, jj))
    out_idx = rng.permutation(hh * ii * jj).reshape(hh, ii, jj)
    same = bool(rng.integers(0, 2))
    projs = (
        DenseProjection("in", "a", weight=rng.integers(-3, 4, (na, 8))),
        DenseProjection("in", "b", weight=rng.integers(-3, 4, (nb, 8))),
        ProductProjection("a", "a" if same else "b", "out", a_idx, b_idx, out_idx, weight=int(rng.integers(1, 4))),
    )
    g = SNNGraph(pops, projs, T, v_bits=40)
    x = rng.integers(0, 32, (3, 8))
    run = run_snn(g, x)
    A = _payload_totals(run, "a")
    B = _payload_totals(run, "a" if same else "b")
    w = projs[2].weight
    for s in range(len(x)):
        want = np.zeros(hh * ii * jj, np.int64)
        want[out_idx] = w * np.einsum("hic,hcj->hij", A[s][a_idx], B[s][b_idx])
        np.testing.assert_array_equal(run.logits[s], want)


def test_graded_max_pool_emits_the_running_maximum_exactly():
    T = 5
    rng = np.random.default_rng(3)
    g = SNNGraph(
        (
            InputPopulation("in", (6,), value_bits=5),
            _encoder("s", 8, T, -4.0, 4.0, shape=(2, 2, 2)),
            MaxPoolPopulation("m", (2, 1, 1)),
            OutputPopulation("out", (2,), bias=np.zeros(2, np.int64)),
        ),
        (
            DenseProjection("in", "s", weight=rng.integers(-3, 4, (8, 6))),
            PoolProjection("s", "m", kernel=2, stride=2),
            DenseProjection("m", "out", weight=np.eye(2, dtype=np.int64)),
        ),
        T,
        v_bits=40,
    )
    assert g.graded("m") and g.graded("s") and not g.graded("out")
    x = rng.integers(0, 32, (4, 6))
    run = run_snn(g, x)
    s = run.rasters["s"]  # (steps, batch, 8)
    running = np.cumsum(s, axis=0).reshape(s.shape[0], len(x), 2, 4).max(axis=3)
    np.testing.assert_array_equal(run.rasters["m"].sum(axis=0), running[-1])
    # a payload emitted at step t is pooled at t + 1
    np.testing.assert_array_equal(np.cumsum(run.rasters["m"], axis=0)[1:], running[:-1])
    assert run.rasters["m"].dtype == np.int64  # graded: no cast to spikes
    np.testing.assert_array_equal(run.logits, running[-1])


def test_an_mbe_unit_holds_inputs_that_arrive_early():
    T = 4
    rng = np.random.default_rng(5)
    w1, w2 = rng.integers(-3, 4, (4, 6)), rng.integers(-3, 4, (4, 4))

    def graph(delay):
        return SNNGraph(
            (
                InputPopulation("in", (6,), value_bits=5),
                _encoder("a", 4, T, -8, 8),
                _encoder("b", 4, T, -40, 40),
                OutputPopulation("out", (4,), bias=np.zeros(4, np.int64)),
            ),
            (
                DenseProjection("in", "a", weight=w1),
                DenseProjection("in", "b", weight=w1, delay=delay),  # early when delay = 0
                DenseProjection("a", "b", weight=w2),
                DenseProjection("b", "out", weight=np.eye(4, dtype=np.int64)),
            ),
            T,
            v_bits=40,
        )

    early, aligned = graph(0), graph(T)
    assert early.schedule()["b"] == aligned.schedule()["b"]
    x = rng.integers(0, 32, (5, 6))
    np.testing.assert_array_equal(run_snn(early, x).rasters["b"], run_snn(aligned, x).rasters["b"])
    # spiking neurons keep the strict rule
    zeros = np.zeros(4, np.int64)
    with pytest.raises(GraphError, match="arrive in different windows"):
        SNNGraph(
            (
                InputPopulation("in", (6,), value_bits=5),
                NeuronPopulation("n1", (4,), threshold=np.full(4, 9), bias=zeros, v0=zeros),
                NeuronPopulation("n2", (4,), threshold=np.full(4, 9), bias=zeros, v0=zeros),
                OutputPopulation("out", (4,), bias=np.zeros(4, np.int64)),
            ),
            (
                DenseProjection("in", "n1", weight=w1),
                DenseProjection("in", "n2", weight=w1),
                DenseProjection("n1", "n2", weight=w2),
                DenseProjection("n2", "out", weight=np.eye(4, dtype=np.int64)),
            ),
            T,
        )


# --------------------------------------------------------------------------- the converted ViT
@pytest.fixture(scope="module")
def vit():
    return load_vit()


@pytest.fixture(scope="module")
def vit_graph8(vit, digits):
    return vit_to_mbe_graph(vit, VitGraphOptions(timesteps=8), digits, fit=False)


def test_shadow_forward_is_the_float_vit(vit, digits):
    x = digits.x_test[:32]
    np.testing.assert_allclose(shadow_forward(vit, x)["logits"], vit_forward(vit, x), atol=1e-9)


def test_converted_vit_graph_decodes_close_to_the_float_values_and_classifies(vit_graph8, vit, digits):
    g = vit_graph8
    n = 40
    x, y = digits.x_test[:n], digits.y_test[:n]
    run = run_snn(g, x.astype(np.int64))
    ref = shadow_forward(vit, x)
    sigma = g.metadata["scales"]
    # E's error is set by the score encoder's resolution, (hi - lo) 2**-T in log2 units, on the
    # score and on its row maximum, plus Q's and K's own
    lo, hi = g.metadata["ranges"]["b0.s"]
    e_tol = 2.0 ** (2 * (hi - lo) * 2.0**-g.timesteps) - 1 + 0.01
    for name, tol in (("b0.ln1.xc", 0.02), ("b0.ln1.r", 0.02), ("b0.e", e_tol), ("b0.o", 0.06)):
        got = run.rasters[name].sum(axis=0) * sigma[name]
        err = np.abs(got - ref[name]).max() / np.abs(ref[name]).max()
        assert err < tol, (name, err)
    # the row maximum is exact: every row of E has a unit at exponent 0
    m = run.rasters["b0.m"].sum(axis=0).reshape(n, -1)
    s = run.rasters["b0.s"].sum(axis=0).reshape(n, m.shape[1], -1)
    np.testing.assert_array_equal(m, s.max(axis=2))
    logits = run.logits * g.metadata["logit_scale"]
    ann = vit_forward(vit, x).argmax(1)
    assert np.mean(logits.argmax(1) == ann) >= 0.95
    assert np.mean(logits.argmax(1) == y) >= np.mean(ann == y) - 0.05
    assert sum(int(c.sum()) for c in run.clipped.values()) <= n * 60  # clipped values are counted, few


def test_vit_graph_file_round_trip(vit_graph8, digits, tmp_path):
    save_graph(vit_graph8, tmp_path / "vit.npz")
    back = load_graph(tmp_path / "vit.npz")
    x = digits.x_test[:3].astype(np.int64)
    np.testing.assert_array_equal(run_snn(back, x).logits, run_snn(vit_graph8, x).logits)
    assert back.population("b0.ln1.r").split == "invsqrt"


def test_the_converted_vit_simulates_exactly_and_names_what_a_core_lacks(vit_graph8, digits):
    from spikeforge.sim import Simulator

    x = digits.x_test[:2].astype(np.int64)
    ref = run_snn(vit_graph8, x)
    for shape in ((4, 4), (8, 8)):  # rounds mode on both: 439 pieces
        program = compile(vit_graph8, hw_of(*shape, **MBE_CORE, slots=8))
        sim = Simulator(program)
        for i in range(len(x)):
            run = sim.run(x[i], record=True)
            np.testing.assert_array_equal(run.logits, ref.logits[i])
            for name in ("b0.m", "b0.e", "b1.rs", "final.r"):
                np.testing.assert_array_equal(run.rasters[name], ref.rasters[name][:, i], err_msg=name)
    with pytest.raises(MappingError, match="needs 5 projection slots"):
        compile(vit_graph8, hw_of(4, 4, **MBE_CORE))
    with pytest.raises(MappingError, match="32-bit membranes"):
        compile(vit_graph8, hw_of(4, 4, **{**MBE_CORE, "v_bits": 24}, slots=8))


def test_a_non_square_token_count_is_refused(vit, digits):
    from dataclasses import replace

    cfg = replace(vit.config, image_shape=(1, 8, 6))
    bad = type(vit)(cfg, vit.params, {})
    with pytest.raises(MBEError, match="not a square"):
        vit_to_mbe_graph(bad, VitGraphOptions(timesteps=8), digits, fit=False)


def test_graph_scales_are_powers_of_two(vit_graph8):
    for name, s in vit_graph8.metadata["scales"].items():
        if name != "input":
            assert math.log2(s) == round(math.log2(s)), name
