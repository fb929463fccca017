"""MBE operators against the float operators, with the tolerances stated in docs/mbe.md, using the
shipped primitives (T = 16; GELU N = 4, the others N = 8)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.models.mbe import MBEError, MBELog, mbe_apply_int, to_lut
from spikeforge.models.mbe_fit import PrimitiveCache, gelu
from spikeforge.models.mbe_ops import (
    MBEPrimitives,
    check_operator,
    encode_operand,
    spike_matmul,
    spike_product,
    spiking_gelu,
    spiking_layernorm,
    spiking_softmax,
)


@pytest.fixture(scope="module")
def cache():
    return PrimitiveCache()


@pytest.fixture(scope="module")
def prims(cache):
    return MBEPrimitives.load(16, 8, cache, fit=False)


def float_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def float_layernorm(x, g, b, eps=1e-5):
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps) * g + b


def test_spiking_gelu_on_the_paper_range(cache):
    p = cache.get("gelu", 4, 16, -120.0, 10.0)
    x = np.linspace(-120, 10, 20_001)
    log = MBELog()
    err = spiking_gelu(x, p, log) - gelu(x)
    assert np.mean(err**2) < 2e-4
    assert np.abs(err).max() < 0.25
    assert log.n_clipped == 0 and 0 < log.report()["gelu"]["firing_rate"] < 1


@given(
    a=st.lists(st.floats(-3, 5), min_size=1, max_size=20),
    b=st.lists(st.floats(-1, 2), min_size=1, max_size=20),
)
def test_spike_product_matches_the_float_product(prims, a, b):
    n = min(len(a), len(b))
    x1, x2 = np.array(a[:n]), np.array(b[:n])
    got = spike_product(x1, x2, prims.identity, (-3.0, 5.0), (-1.0, 2.0))
    # Identity encodings are accurate to ~1e-4 of the range: 8 * 2 * 1e-4 + 5 * 3 * 1e-4 + ...
    np.testing.assert_allclose(got, x1 * x2, atol=5e-3)
    explicit = spike_product(x1, x2, prims.identity, (-3.0, 5.0), (-1.0, 2.0), explicit=True)
    np.testing.assert_allclose(explicit, got, rtol=1e-12, atol=1e-12)


def test_square_encodes_once_and_counts_pairs_of_one_train(prims):
    x = np.linspace(-2, 2, 101)
    log = MBELog()
    sq = spike_product(x, x, prims.identity, (-2.0, 2.0), (-2.0, 2.0), log, site="sq")
    np.testing.assert_allclose(sq, x * x, atol=2e-3)
    assert set(log.total) == {"sq.a"}


def test_explicit_pair_sum_is_an_and_of_binary_spikes_weighted_by_the_intensity_outer_product(prims):
    x1, x2 = np.array([0.7]), np.array([-0.4])
    s1, d1, b1 = encode_operand(x1, prims.identity, (-1.0, 1.0))
    s2, d2, b2 = encode_operand(x2, prims.identity, (-1.0, 1.0))
    assert s1.dtype == bool and s1.shape == (1, 8 * 16)
    pairs = sum(d1[k] * d2[m] for k in np.flatnonzero(s1[0]) for m in np.flatnonzero(s2[0] & True))
    full = b1 * b2 + b1 * (s2[0] @ d2) + b2 * (s1[0] @ d1) + pairs
    np.testing.assert_allclose(spike_product(x1, x2, prims.identity, (-1.0, 1.0), (-1.0, 1.0)), [full], rtol=1e-12)


def test_spike_matmul_is_the_sum_of_spike_products_and_close_to_float(prims):
    rng = np.random.default_rng(0)
    a = rng.uniform(-2, 2, (3, 5, 7))
    b = rng.uniform(-1, 3, (3, 7, 4))
    got = spike_matmul(a, b, prims.identity, (-2.0, 2.0), (-1.0, 3.0))
    by_products = np.stack(
        [spike_product(a[:, :, j, None], b[:, j, None, :], prims.identity, (-2.0, 2.0), (-1.0, 3.0)) for j in range(7)]
    ).sum(0)
    np.testing.assert_allclose(got, by_products, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got, a @ b, atol=2e-2)


@given(
    rows=st.integers(1, 4),
    n=st.integers(2, 32),
    scale=st.floats(0.1, 8.0),
    seed=st.integers(0, 2**16),
)
def test_softmax_rows_sum_to_one_and_match_float(prims, rows, n, scale, seed):
    x = np.random.default_rng(seed).normal(0, scale, (rows, n))
    log = MBELog()
    p = spiking_softmax(x, prims, log=log)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=5e-3)
    np.testing.assert_allclose(p, float_softmax(x), atol=5e-3)
    assert log.n_clipped == 0  # fraction, mantissa and product operands are in range by construction


@given(d=st.integers(2, 64), spread=st.floats(0.05, 4.0), seed=st.integers(0, 2**16))
def test_layernorm_matches_float(prims, d, spread, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, spread, (3, d))
    g, b = rng.uniform(0.5, 1.5, d), rng.normal(0, 0.1, d)
    xc = x - x.mean(-1, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(-1) + 1e-5)
    xc_range = (float(xc.min()) - 1e-9, float(xc.max()) + 1e-9)
    rstd_range = (0.0, float(r.max()) * 1.01)
    log = MBELog()
    y = spiking_layernorm(x, g, b, prims, xc_range, rstd_range, log=log)
    # Dominated by the worst case of the invsqrt fit (RMS ~0.2 %), scaled by |xc| / std and gamma.
    err = y - float_layernorm(x, g, b)
    assert np.abs(err).max() < 5e-2 and np.sqrt(np.mean(err**2)) < 1e-2
    assert log.n_clipped == 0


def test_layernorm_counts_inputs_outside_the_calibrated_range(prims):
    x = np.array([[0.0, 1.0, 2.0, 10.0]])
    log = MBELog()
    spiking_layernorm(x, np.ones(4), np.zeros(4), prims, (-1.0, 1.0), (0.0, 2.0), log=log)
    rep = log.report()
    # xc = -3.25, -2.25, -1.25, 6.75: all outside [-1, 1]; encoded once, counted once.
    assert rep["layernorm.xc"]["clipped"] == 4 and rep["layernorm.xc"]["total"] == 4
    assert rep["layernorm.invsqrt"]["clipped"] == 0 and rep["layernorm.rstd"]["clipped"] == 0


def test_operator_without_mbe_replacement_is_named():
    assert "MBE_gelu" in check_operator("gelu")
    with pytest.raises(MBEError, match="operator 'tanh' has no MBE replacement"):
        check_operator("tanh")


def test_bad_operand_ranges_and_primitives_are_refused(prims, cache):
    with pytest.raises(MBEError, match="lo < hi"):
        spike_product(np.ones(2), np.ones(2), prims.identity, (1.0, 1.0), (0.0, 1.0))
    with pytest.raises(MBEError, match="must share one T"):
        MBEPrimitives(prims.exp2, prims.inv, prims.invsqrt, cache.get_or_fit("identity", 1, 4, 0.0, 1.0))
    with pytest.raises(MBEError, match="must be fitted on"):
        MBEPrimitives(prims.exp2, prims.inv, prims.exp2, prims.identity)
    with pytest.raises(MBEError, match="no cached MBE primitive"):
        MBEPrimitives.load(5, 3, PrimitiveCache(), fit=False)


def test_integer_lut_operators_match_float_within_the_same_tolerances(prims, cache):
    iprims = MBEPrimitives.load(16, 8, cache, fit=False, integer=True)
    rng = np.random.default_rng(3)
    s = rng.normal(0, 3, (200, 16))
    log = MBELog()
    p = spiking_softmax(s, iprims, log=log)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=5e-3)
    np.testing.assert_allclose(p, float_softmax(s), atol=5e-3)
    assert log.spikes["softmax.exp2"] > 0
    x = rng.normal(0, 1, (50, 32))
    xc = x - x.mean(-1, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(-1) + 1e-5)
    y = spiking_layernorm(x, np.ones(32), np.zeros(32), iprims, (-5.0, 5.0), (0.0, float(r.max()) * 1.01))
    assert np.abs(y - float_layernorm(x, np.ones(32), np.zeros(32))).max() < 5e-2
    a, b = rng.uniform(-3, 5, 1000), rng.uniform(-1, 2, 1000)
    got = spike_product(a, b, prims.identity, (-3.0, 5.0), (-1.0, 2.0), integer=True)
    np.testing.assert_allclose(got, a * b, atol=5e-3)
    g = cache.get("gelu", 4, 16, -120.0, 10.0)
    xs = np.linspace(-120, 10, 10_001)
    np.testing.assert_array_equal(spiking_gelu(xs, g, integer=True), mbe_apply_int(xs, to_lut(g))[1])
