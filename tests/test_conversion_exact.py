"""Tier 1, whole network: every spike count equals the integer ANN's code; logits are equal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import random_checkpoint
from spikeforge.models import ModelConfig, convert, float_forward, run_integer_ann, run_snn


def assert_exact(graph, x):
    ann = run_integer_ann(graph, x)
    snn = run_snn(graph, x, record=False)
    for pop in graph.populations:
        if pop.kind == "input":
            continue
        np.testing.assert_array_equal(snn.counts[pop.name], ann.codes[pop.name], err_msg=pop.name)
    np.testing.assert_array_equal(snn.logits, ann.logits)
    return ann, snn


@pytest.mark.slow
def test_bundled_model_snn_equals_integer_ann(tiny_graph, digits):
    ann, snn = assert_exact(tiny_graph, digits.x_test)
    # not vacuous: the network is busy and the classifier works
    assert sum(int(snn.counts[p.name].sum()) for p in tiny_graph.populations if p.kind == "neuron") > 100_000
    assert np.mean(ann.logits.argmax(1) == digits.y_test) >= 0.95


def test_bundled_model_plain_if_is_not_exact(tiny_ckpt, digits):
    graph = convert(tiny_ckpt, neuron="if")
    ann = run_integer_ann(graph, digits.x_test[:32])
    snn = run_snn(graph, digits.x_test[:32], record=False)
    mismatched = sum(
        int((snn.counts[p.name] != ann.codes[p.name]).sum()) for p in graph.populations if p.kind == "neuron"
    )
    assert mismatched > 0


@given(
    stages=st.integers(0, 2),
    chans=st.integers(1, 6),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 5),
    mlp=st.integers(1, 10),
    blocks=st.integers(0, 2),
    levels=st.integers(1, 8),
    t_offset=st.integers(-2, 2),
    extra_delay=st.integers(0, 2),
    weight_bits=st.sampled_from([4, 6, 8]),
    seed=st.integers(0, 10_000),
)
def test_random_models_snn_equals_integer_ann(
    stages, chans, heads, head_dim, mlp, blocks, levels, t_offset, extra_delay, weight_bits, seed
):
    side = 2**stages * 2
    cfg = ModelConfig(
        image_shape=(1 + seed % 2, side, side + 2**stages * (seed % 3)),
        input_max=15,
        tokenizer_channels=(chans,) * stages,
        dim=heads * head_dim,
        heads=heads,
        mlp_hidden=mlp,
        blocks=blocks,
        classes=3,
        levels=levels,
    )
    T = max(1, levels + t_offset)
    graph = convert(random_checkpoint(cfg, seed), timesteps=T, weight_bits=weight_bits, delay=T - 1 + extra_delay)
    x = np.random.default_rng(seed).integers(0, 16, (3,) + cfg.image_shape)
    ann, snn = assert_exact(graph, x)
    assert snn.steps == graph.total_steps


def test_random_models_are_not_silent():
    """The generator used above produces networks with activity in every population."""
    cfg = ModelConfig(image_shape=(1, 8, 8), tokenizer_channels=(4,), dim=8, heads=2, mlp_hidden=8, blocks=2, classes=3)
    graph = convert(random_checkpoint(cfg, 1))
    x = np.random.default_rng(1).integers(0, 17, (8, 1, 8, 8))
    ann, snn = assert_exact(graph, x)
    silent = [p.name for p in graph.populations if p.kind == "neuron" and snn.counts[p.name].sum() == 0]
    assert silent == []


def test_integer_ann_tracks_float_model(tiny_ckpt, digits):
    """Integer weights change few predictions relative to the float QAT network."""
    graph = convert(tiny_ckpt)
    x = digits.x_test
    agree = np.mean(run_integer_ann(graph, x).logits.argmax(1) == float_forward(tiny_ckpt, x).argmax(1))
    assert agree >= 0.97
