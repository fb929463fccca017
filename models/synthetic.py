"""Synthetic checkpoints: random weights with realistic activity, for tests and scale benchmarks.

``imagenet_config()`` is the ImageNet-size CSDformer shape used to test that mapping and
simulation scale (224 x 224 input, four tokenizer stages to 14 x 14 = 196 tokens, dim 384,
6 heads, MLP 1536, 8 blocks, L = 7).
"""

from __future__ import annotations

import numpy as np

from .architecture import ModelConfig
from .checkpoint import FloatCheckpoint, expected_parameters

__all__ = ["random_checkpoint", "imagenet_config", "IMAGENET_BN_BIAS_MEAN"]

#: ``random_checkpoint(imagenet_config(), seed, bn_bias_mean=...)`` for about 15 % firing (measured:
#: ``scripts/bench_sim.py`` reports the rate).
IMAGENET_BN_BIAS_MEAN = -0.6


def imagenet_config(blocks: int = 8, levels: int = 7) -> ModelConfig:
    """The ImageNet-size CSDformer shape (synthetic: nothing here is trained)."""
    return ModelConfig(
        image_shape=(3, 224, 224),
        input_max=255,
        tokenizer_channels=(48, 96, 192, 384),
        dim=384,
        heads=6,
        mlp_hidden=1536,
        blocks=blocks,
        classes=1000,
        levels=levels,
    )


def random_checkpoint(cfg: ModelConfig, seed: int, bn_bias_mean: float = 0.3) -> FloatCheckpoint:
    """A float checkpoint with random weights, BN statistics and thresholds (an untrained net).

    BatchNorm keeps pre-activations near unit variance and thresholds are 0.5..2.5, so every
    layer is active; attention thresholds are scaled to the typical score so attention is
    neither dead nor saturated. ``bn_bias_mean`` (the mean BatchNorm shift) sets how active:
    lower means sparser spikes (``IMAGENET_BN_BIAS_MEAN`` gives about 15 % firing).
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
        elif name.endswith("bn.bias"):
            params[name] = rng.normal(bn_bias_mean, 0.5, shape)
        elif name == "head.bias" or name == "tokenizer.pos":
            params[name] = rng.normal(0.3, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            params[name] = rng.normal(0, 1.0 / np.sqrt(fan_in), shape)
    for b in range(cfg.blocks):
        p = f"blocks.{b}"
        lq, lk, lv = (float(params[f"{p}.{x}.quant.lam"]) for x in "qkv")
        typical = cfg.s_value * cfg.head_dim * lq * lk / 4 / cfg.n_value
        params[f"{p}.attn_quant.lam"] = np.array(typical * rng.uniform(0.3, 1.0))
        params[f"{p}.o_quant.lam"] = np.array(
            cfg.tokens * float(params[f"{p}.attn_quant.lam"]) * lv / 4 * rng.uniform(0.05, 0.3)
        )
    return FloatCheckpoint(config=cfg, params=params, metrics={"synthetic_seed": seed})
