"""Tier 1: temporal decomposition of spike x spike products and of max-pool is exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.models.graph import PoolProjection, ProductProjection
from spikeforge.models.neurons import maxpool_step
from spikeforge.models.projections import pool_windows, product_operands, product_total


@given(
    heads=st.integers(1, 3),
    i=st.integers(1, 5),
    c=st.integers(1, 6),
    j=st.integers(1, 5),
    T=st.integers(1, 8),
    w=st.integers(-5, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_product_increments_sum_to_dense_product(heads, i, c, j, T, w, seed):
    rng = np.random.default_rng(seed)
    na, nb = heads * i * c, heads * c * j
    proj = ProductProjection(
        "a",
        "b",
        "o",
        a_index=rng.permutation(na).reshape(heads, i, c),
        b_index=rng.permutation(nb).reshape(heads, c, j),
        out_index=rng.permutation(heads * i * j).reshape(heads, i, j),
        weight=w,
    )
    a = rng.integers(0, 2, (T, 2, na))  # binary spike trains, batch of 2
    b = rng.integers(0, 2, (T, 2, nb))
    abar = np.zeros((2, heads, i, c), np.int64)
    bbar = np.zeros((2, heads, c, j), np.int64)
    total = np.zeros((2, heads * i * j), np.int64)
    for t in range(T):
        at, bt = product_operands(proj, a[t], b[t])
        bbar += bt
        total[:, proj.out_index] += w * (abar @ bt + at @ bbar)  # Abar[t-1] b[t] + a[t] Bbar[t]
        abar += at
        # every increment uses additions of non-negative counts only
        assert (abar @ bt).min() >= 0 and (at @ bbar).min() >= 0
    dense = product_total(proj, a.sum(0), b.sum(0), heads * i * j)
    np.testing.assert_array_equal(total, dense)


@given(
    c=st.integers(1, 3),
    hw=st.integers(2, 7),
    k=st.integers(1, 3),
    T=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_maxpool_decomposition_sums_to_max_of_counts(c, hw, k, T, seed):
    rng = np.random.default_rng(seed)

    class Src:
        shape = (c, hw, hw)

    proj = PoolProjection("s", "p", kernel=min(k, hw), stride=min(k, hw))
    win = pool_windows(proj, Src)
    spikes = rng.integers(0, 2, (T, 3, c * hw * hw))
    counts = np.zeros((3, c * hw * hw), np.int64)
    prev = np.zeros((3, len(win)), np.int64)
    total = np.zeros((3, len(win)), np.int64)
    for t in range(T):
        counts += spikes[t]
        o = maxpool_step(counts, win, prev)
        assert set(np.unique(o)) <= {0, 1}  # binary output spikes
        total += o
    np.testing.assert_array_equal(total, spikes.sum(0)[:, win].max(axis=2))


def test_pool_windows_match_direct_maxpool():
    class Src:
        shape = (2, 4, 6)

    x = np.arange(48).reshape(2, 4, 6)[None]
    win = pool_windows(PoolProjection("s", "p", kernel=2, stride=2), Src)
    direct = x.reshape(1, 2, 2, 2, 3, 2).max(axis=(3, 5)).reshape(1, -1)
    np.testing.assert_array_equal(x.reshape(1, -1)[:, win].max(axis=2), direct)
