"""Shared fixtures: the bundled model, its graph, and a generator of random small models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from spikeforge.models import FloatCheckpoint, ModelConfig, convert, load_digits, load_model
from spikeforge.models.checkpoint import expected_parameters

settings.register_profile("spikeforge", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("spikeforge")


def random_checkpoint(cfg: ModelConfig, seed: int) -> FloatCheckpoint:
    """A float checkpoint with random weights, BN statistics and thresholds (an untrained net).

    Scales are chosen so that every layer has real activity: BN keeps pre-activations near
    unit variance and thresholds are 0.5..2.5.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in expected_parameters(cfg).items():
        if name.endswith(".lam"):
            params[name] = np.array(rng.uniform(0.5, 2.5))
        elif name.endswith("running_mean"):
            params[name] = rng.normal(0, 0.2, shape)
        elif name.endswith("running_var"):
            params[name] = rng.uniform(0.05, 0.5, shape)
        elif name.endswith("bn.weight"):
            params[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("bn.bias") or name == "head.bias" or name == "tokenizer.pos":
            params[name] = rng.normal(0.3, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            params[name] = rng.normal(0, 1.0 / np.sqrt(fan_in), shape)
    # attention quantizers see products of two quantized values divided by n: scale their
    # thresholds to the typical score so that attention is neither dead nor saturated
    for b in range(cfg.blocks):
        p = f"blocks.{b}"
        lq, lk, lv = (float(params[f"{p}.{x}.quant.lam"]) for x in "qkv")
        typical = cfg.s_value * cfg.head_dim * lq * lk / 4 / cfg.n_value
        params[f"{p}.attn_quant.lam"] = np.array(typical * rng.uniform(0.3, 1.0))
        params[f"{p}.o_quant.lam"] = np.array(
            cfg.tokens * float(params[f"{p}.attn_quant.lam"]) * lv / 4 * rng.uniform(0.05, 0.3)
        )
    return FloatCheckpoint(config=cfg, params=params)


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def tiny_ckpt():
    return load_model("tiny-digits")


@pytest.fixture(scope="session")
def tiny_graph(tiny_ckpt):
    return convert(tiny_ckpt)
