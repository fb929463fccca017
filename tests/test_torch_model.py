"""The PyTorch QAT model, its numpy mirror, BN folding and the module-level conversion checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_checkpoint
from spikeforge.models import ConversionError, ModelConfig, float_forward
from spikeforge.models.float_model import conv2d
from spikeforge.models.quantization import fold_batchnorm
from spikeforge.models.torch_model import QCFS, CSDTransformer, to_checkpoint


def test_bn_folding_equals_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True).double()
    bn = nn.BatchNorm2d(5).double()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    ref = bn(conv(x)).detach().numpy()
    w, b = fold_batchnorm(
        conv.weight.detach().numpy(),
        conv.bias.detach().numpy(),
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        bn.eps,
    )
    folded = conv2d(x.numpy(), w, 1, 1) + b[None, :, None, None]
    np.testing.assert_allclose(folded, ref, rtol=1e-12, atol=1e-12)


def test_qcfs_module_matches_formula():
    q = QCFS(levels=5, init=1.5)
    z = torch.linspace(-1, 3, 101)
    expect = 1.5 * torch.clamp(torch.floor(z * 5 / 1.5 + 0.5) / 5, 0, 1)
    torch.testing.assert_close(q(z), expect)


def test_numpy_float_model_mirrors_torch():
    cfg = ModelConfig(image_shape=(1, 8, 8), tokenizer_channels=(4,), dim=8, heads=2, mlp_hidden=12, blocks=2)
    ckpt = random_checkpoint(cfg, 3)
    model = CSDTransformer(cfg).double()
    model.load_state_dict({k: torch.tensor(v) for k, v in ckpt.params.items()}, strict=False)
    model.eval()
    x = np.random.default_rng(0).integers(0, 17, (16, 1, 8, 8))
    with torch.no_grad():
        ref = model(torch.tensor(x, dtype=torch.float64) / cfg.input_max).numpy()
    np.testing.assert_allclose(float_forward(ckpt, x), ref, rtol=1e-9, atol=1e-9)


def test_to_checkpoint_round_trips_parameters():
    cfg = ModelConfig(image_shape=(1, 8, 8), tokenizer_channels=(4,), dim=8, heads=2, mlp_hidden=12, blocks=1)
    model = CSDTransformer(cfg)
    ckpt = to_checkpoint(model)
    assert set(ckpt.params) == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize(
    ("module", "reason"),
    [(nn.GELU(), "GELU"), (nn.LayerNorm(8), "LayerNorm"), (nn.Softmax(-1), "softmax"), (nn.Dropout(), "dropout")],
)
def test_to_checkpoint_names_unsupported_layers(module, reason):
    cfg = ModelConfig(image_shape=(1, 8, 8), tokenizer_channels=(4,), dim=8, heads=2, mlp_hidden=12, blocks=1)
    model = CSDTransformer(cfg)
    model.blocks[0].extra = module
    with pytest.raises(ConversionError, match=r"layer 'blocks\.0\.extra'") as err:
        to_checkpoint(model)
    assert reason in str(err.value)
