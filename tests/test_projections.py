"""Projection arithmetic against direct definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.models.graph import ConvProjection, MaxPoolPopulation, PoolDenseProjection
from spikeforge.models.projections import propagate_linear


def direct_conv(x, k, stride, pad):
    c, h, w = x.shape
    co, _, kh, kw = k.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((co, ho, wo), np.int64)
    for o in range(co):
        for i in range(ho):
            for j in range(wo):
                for ci in range(c):
                    for u in range(kh):
                        for v in range(kw):
                            y, xx = i * stride + u - pad, j * stride + v - pad
                            if 0 <= y < h and 0 <= xx < w:
                                out[o, i, j] += k[o, ci, u, v] * x[ci, y, xx]
    return out


@given(
    c=st.integers(1, 3),
    co=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    seed=st.integers(0, 999),
)
def test_conv_matches_direct_loops(c, co, h, w, k, stride, pad, seed):
    if h + 2 * pad < k or w + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    kernel = rng.integers(-128, 128, (co, c, k, k))
    x = rng.integers(0, 5, (2, c, h, w))
    src = MaxPoolPopulation("s", (c, h, w))
    got = propagate_linear(ConvProjection("s", "d", kernel, stride, pad), x.reshape(2, -1), src)
    for b in range(2):
        np.testing.assert_array_equal(got[b], direct_conv(x[b], kernel, stride, pad).reshape(-1))


def test_pool_dense_sums_positions_then_multiplies():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (3, 2 * 3 * 3))
    wt = rng.integers(-5, 5, (4, 2))
    got = propagate_linear(PoolDenseProjection("s", "d", wt), x, MaxPoolPopulation("s", (2, 3, 3)))
    np.testing.assert_array_equal(got, x.reshape(3, 2, 9).sum(2) @ wt.T)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([3, 2**20, 2**28]))  # 2**28: sums above 2**53, below 2**63
def test_int_matmul_equals_the_integer_product_on_both_paths(seed, top):
    """The float64 BLAS path is taken only where it is exact; above 2**53 the int64 path is."""
    from spikeforge.models.projections import _int_matmul

    rng = np.random.default_rng(seed)
    x = rng.integers(-top, top, (5, 40))
    w = rng.integers(-top, top, (40, 7))
    np.testing.assert_array_equal(_int_matmul(x, w), x @ w)
