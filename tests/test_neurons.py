"""Tier 1, neuron level: IF reproduces QCFS for constant input; DIF for uneven input; IF does not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.models.neurons import if_fire, quantized_code
from spikeforge.models.quantization import qcfs, qcfs_code


def run_neuron(inputs: np.ndarray, theta: int, v0: int, d: int) -> int:
    """Spike count of one DIF neuron (d = 0: plain IF) fed ``inputs[t]`` for ``t < T``."""
    T = len(inputs)
    v = np.array([[v0]], np.int64)
    th = np.array([theta], np.int64)
    count = 0
    for t in range(T + d):
        if t < T:
            v += int(inputs[t])
        if d <= t < d + T:
            count += int(if_fire(v, th)[0, 0])
    return count


@given(
    levels=st.integers(1, 16),
    half_theta=st.integers(1, 200),
    current=st.integers(-300, 600),
)
def test_if_reproduces_qcfs_for_constant_input(levels, half_theta, current):
    theta = 2 * half_theta  # theta = lambda; v0 = theta / 2 exactly
    T = levels
    spikes = run_neuron(np.full(T, current), theta, theta // 2, d=0)
    assert spikes == int(qcfs_code(current, theta, levels))
    assert spikes * theta / T == pytest.approx(qcfs(current, theta, levels), rel=1e-12)


@given(
    T=st.integers(1, 12),
    theta=st.integers(1, 300),
    extra=st.integers(0, 3),
    data=st.data(),
)
def test_dif_reproduces_quantizer_for_uneven_input(T, theta, extra, data):
    inputs = np.array(data.draw(st.lists(st.integers(-400, 400), min_size=T, max_size=T)))
    v0 = theta // 2
    spikes = run_neuron(inputs, theta, v0, d=T - 1 + extra)
    assert spikes == int(quantized_code(np.array(v0 + inputs.sum()), np.array(theta), T))


def test_plain_if_mismatches_on_uneven_input():
    rng = np.random.default_rng(0)
    T, theta = 7, 20
    mismatched = 0
    for _ in range(500):
        # early positive then negative, the pattern that makes IF fire too early
        inputs = np.concatenate([rng.integers(10, 40, 3), rng.integers(-40, 0, T - 3)])
        ideal = int(quantized_code(np.array(theta // 2 + inputs.sum()), np.array(theta), T))
        mismatched += run_neuron(inputs, theta, theta // 2, d=0) != ideal
        assert run_neuron(inputs, theta, theta // 2, d=T - 1) == ideal
    assert mismatched > 100  # IF is wrong on a large share; DIF on none
