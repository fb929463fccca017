"""Bad input gets one clear sentence naming what is wrong: conversion, checkpoints, data, runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikeforge.models import (
    ConversionError,
    DatasetError,
    FileFormatError,
    GraphError,
    ModelConfig,
    convert,
    load_checkpoint,
    load_npz_dataset,
    run_integer_ann,
    run_snn,
    save_checkpoint,
)
from spikeforge.models.npzio import read_npz, write_npz


def small_ckpt(tiny_ckpt):
    return dataclasses.replace(tiny_ckpt, params=dict(tiny_ckpt.params))


def test_unknown_layer_is_named(tiny_ckpt):
    ckpt = small_ckpt(tiny_ckpt)
    ckpt.params["blocks.0.norm1.weight"] = np.ones(32)
    with pytest.raises(ConversionError, match=r"layer 'blocks\.0\.norm1'.*cannot handle it"):
        convert(ckpt)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [("activation", "gelu", "GELU"), ("norm", "layernorm", "LayerNorm"), ("attention", "softmax", "softmax")],
)
def test_unsupported_operators_give_the_reason(tiny_ckpt, key, value, reason):
    ckpt = small_ckpt(tiny_ckpt)
    ckpt.config = dataclasses.replace(ckpt.config, **{key: value})
    with pytest.raises(ConversionError, match=reason):
        convert(ckpt)


def test_missing_and_misshapen_parameters(tiny_ckpt):
    ckpt = small_ckpt(tiny_ckpt)
    del ckpt.params["blocks.1.fc1.linear.weight"]
    with pytest.raises(ConversionError, match=r"lacks parameter 'blocks\.1\.fc1\.linear\.weight'"):
        convert(ckpt)
    ckpt = small_ckpt(tiny_ckpt)
    ckpt.params["head.weight"] = np.zeros((10, 31))
    with pytest.raises(ConversionError, match=r"'head\.weight' has shape \(10, 31\).*\(10, 32\)"):
        convert(ckpt)


def test_non_finite_and_non_positive_thresholds(tiny_ckpt):
    ckpt = small_ckpt(tiny_ckpt)
    ckpt.params["blocks.0.q.bn.weight"] = np.full(32, np.nan)
    with pytest.raises(ConversionError, match="NaN"):
        convert(ckpt)
    ckpt = small_ckpt(tiny_ckpt)
    ckpt.params["blocks.0.q.quant.lam"] = np.array(-1.0)
    with pytest.raises(ConversionError, match="must be > 0"):
        convert(ckpt)


def test_timesteps_and_levels_below_one(tiny_ckpt):
    with pytest.raises(ConversionError, match="timesteps must be >= 1"):
        convert(tiny_ckpt, timesteps=0)
    with pytest.raises(ConversionError, match="levels must be >= 1"):
        ModelConfig(levels=0)


def test_widths_out_of_range(tiny_ckpt):
    with pytest.raises(ConversionError, match="weight_bits must be in 2..16"):
        convert(tiny_ckpt, weight_bits=20)
    with pytest.raises(ConversionError, match=r"membrane of .* raise v_bits|does not fit in 12-bit"):
        convert(tiny_ckpt, v_bits=12)


def test_unknown_config_key(tmp_path, tiny_ckpt):
    save_checkpoint(tiny_ckpt, tmp_path / "c.npz")
    header, arrays = read_npz(tmp_path / "c.npz")
    header["config"]["dropout"] = 0.1
    write_npz(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(ConversionError, match="unknown key.*dropout"):
        load_checkpoint(tmp_path / "bad.npz")


def test_checkpoint_version_and_corruption(tmp_path, tiny_ckpt):
    save_checkpoint(tiny_ckpt, tmp_path / "c.npz")
    header, arrays = read_npz(tmp_path / "c.npz")
    header["version"] = 7
    write_npz(tmp_path / "v.npz", header, arrays)
    with pytest.raises(FileFormatError, match="version 7 is not supported"):
        load_checkpoint(tmp_path / "v.npz")
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:1000])
    with pytest.raises(FileFormatError):
        load_checkpoint(tmp_path / "t.npz")


def test_run_input_errors(tiny_graph):
    with pytest.raises(GraphError, match=r"shape \(8, 8\) per sample .* expects \(1, 8, 8\)"):
        run_snn(tiny_graph, np.zeros((2, 8, 8), np.int64))
    with pytest.raises(GraphError, match="must hold integers"):
        run_integer_ann(tiny_graph, np.zeros((2, 1, 8, 8)))
    with pytest.raises(GraphError, match=r"values must be in 0\.\.31"):
        run_snn(tiny_graph, np.full((1, 1, 8, 8), 40))


def test_dataset_errors(tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match="missing key.*x_test"):
        load_npz_dataset(tmp_path / "a.npz")
    np.savez(
        tmp_path / "b.npz",
        x_train=np.zeros((2, 4, 4)),
        y_train=np.zeros(2, int),
        x_test=np.zeros((1, 4, 4)),
        y_test=np.zeros(1, int),
    )
    with pytest.raises(DatasetError, match="must hold integers"):
        load_npz_dataset(tmp_path / "b.npz")
    np.savez(
        tmp_path / "c.npz",
        x_train=np.zeros((2, 4, 4), int),
        y_train=np.zeros(3, int),
        x_test=np.zeros((1, 4, 4), int),
        y_test=np.zeros(1, int),
    )
    with pytest.raises(DatasetError, match=r"y_train has shape \(3,\), expected \(2,\)"):
        load_npz_dataset(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DatasetError):
        load_npz_dataset(tmp_path / "d.npz")


def test_bundled_digits(digits):
    assert digits.x_train.shape == (1438, 1, 8, 8) and digits.x_test.shape == (359, 1, 8, 8)
    assert digits.x_train.max() == 16 and digits.classes == 10
    assert np.bincount(digits.y_test).min() >= 34  # stratified split
