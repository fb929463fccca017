"""Float checkpoints of the conversion-oriented transformer: ``.npz`` + JSON header, no pickle.

A checkpoint holds the :class:`ModelConfig`, every trained parameter under its PyTorch
state-dict name (float32/float64), and the metrics measured when it was trained. It is
independent of PyTorch: conversion, the numpy float model and the demo read it with numpy.

File format ``spikeforge-checkpoint`` version 1: the header is
``{"format", "version", "config", "metrics"}``; every other array is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import ModelConfig
from .errors import ConversionError, FileFormatError
from .npzio import read_npz, write_npz

__all__ = ["FORMAT", "VERSION", "FloatCheckpoint", "expected_parameters", "load_checkpoint", "save_checkpoint"]

FORMAT = "spikeforge-checkpoint"
VERSION = 1


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


def expected_parameters(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter a checkpoint of ``cfg`` must hold."""
    spec: dict[str, tuple[int, ...]] = {}
    c_in = cfg.image_shape[0]
    for i, c in enumerate(cfg.tokenizer_channels):
        p = f"tokenizer.stages.{i}"
        spec[f"{p}.conv.weight"] = (c, c_in, 3, 3)
        spec.update(_bn(f"{p}.bn", c))
        spec[f"{p}.quant.lam"] = ()
        c_in = c
    h, w = cfg.token_grid
    spec["tokenizer.proj.conv.weight"] = (cfg.dim, c_in, 3, 3)
    spec.update(_bn("tokenizer.proj.bn", cfg.dim))
    spec["tokenizer.pos"] = (cfg.dim, h, w)
    spec["tokenizer.quant.lam"] = ()
    for b in range(cfg.blocks):
        p = f"blocks.{b}"
        for name, co, ci, quant in (
            ("q", cfg.dim, cfg.dim, True),
            ("k", cfg.dim, cfg.dim, True),
            ("v", cfg.dim, cfg.dim, True),
            ("proj", cfg.dim, cfg.dim, False),
            ("fc1", cfg.mlp_hidden, cfg.dim, True),
            ("fc2", cfg.dim, cfg.mlp_hidden, False),
        ):
            spec[f"{p}.{name}.linear.weight"] = (co, ci)
            spec.update(_bn(f"{p}.{name}.bn", co))
            if quant:
                spec[f"{p}.{name}.quant.lam"] = ()
        for q in ("attn_quant", "o_quant", "res1_quant", "res2_quant"):
            spec[f"{p}.{q}.lam"] = ()
    spec["head.weight"] = (cfg.classes, cfg.dim)
    spec["head.bias"] = (cfg.classes,)
    return spec


@dataclass
class FloatCheckpoint:
    """A trained float network: config, parameters by state-dict name, training metrics."""

    config: ModelConfig
    params: dict[str, np.ndarray]
    metrics: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.params[key]


def save_checkpoint(ckpt: FloatCheckpoint, path: str | Path) -> None:
    """Write ``ckpt`` to ``path`` (``.npz``)."""
    header = {"format": FORMAT, "version": VERSION, "config": ckpt.config.to_json(), "metrics": ckpt.metrics}
    write_npz(path, header, {k: np.asarray(v) for k, v in ckpt.params.items()})


def load_checkpoint(path: str | Path) -> FloatCheckpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameter names and shapes are checked by the converter, which names any layer it
    cannot handle; here only the container is checked.
    """
    header, arrays = read_npz(path, expected_format=FORMAT)
    if header.get("version") != VERSION:
        raise FileFormatError(
            f"{path}: checkpoint format version {header.get('version')!r} is not supported "
            f"(this SpikeForge reads version {VERSION}); re-export it with this version."
        )
    if not isinstance(header.get("config"), dict):
        raise FileFormatError(f"{path}: the checkpoint header has no model config.")
    try:
        config = ModelConfig.from_json(header["config"])
    except TypeError as exc:
        raise ConversionError(f"{path}: model config is invalid ({exc}).") from None
    for key, arr in arrays.items():
        if arr.dtype.kind not in "fiu":
            raise FileFormatError(f"{path}: parameter {key!r} has non-numeric dtype {arr.dtype}.")
    return FloatCheckpoint(config=config, params=arrays, metrics=dict(header.get("metrics", {})))
