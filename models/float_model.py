"""The conversion-oriented transformer's float forward pass in numpy (eval mode).

Mirrors :mod:`spikeforge.models.torch_model` operation for operation (see
:mod:`spikeforge.models.architecture` for the equations), so the float QAT accuracy can be
measured, and conversion checked, without PyTorch installed.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import FloatCheckpoint
from .quantization import qcfs

__all__ = ["conv2d", "float_forward"]


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Float 2-D convolution (cross-correlation, as in PyTorch) of ``(B, C, H, W)`` inputs."""
    b, c, h, w = x.shape
    co, _, kh, kw = kernel.shape
    img = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(img, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("bchwij,ocij->bohw", win, kernel, optimize=True)


def _bn(x: np.ndarray, p: dict[str, np.ndarray], prefix: str, eps: float) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = p[f"{prefix}.running_mean"].reshape(shape)
    var = p[f"{prefix}.running_var"].reshape(shape)
    gamma = p[f"{prefix}.weight"].reshape(shape)
    beta = p[f"{prefix}.bias"].reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _maxpool2(x: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def float_forward(ckpt: FloatCheckpoint, images: np.ndarray) -> np.ndarray:
    """Logits of the float (fake-quantized) network for integer ``images`` ``(B, C, H, W)``.

    Parameters
    ----------
    ckpt : FloatCheckpoint
        The trained network.
    images : ndarray, shape (batch, C, H, W)
        Integer pixels in ``0..input_max``.

    Returns
    -------
    ndarray of float64, shape (batch, classes)
    """
    cfg = ckpt.config
    p = {k: np.asarray(v, np.float64) for k, v in ckpt.params.items()}
    L, eps = cfg.levels, cfg.bn_eps
    x = np.asarray(images, np.float64).reshape((-1,) + cfg.image_shape) / cfg.input_max
    for i in range(len(cfg.tokenizer_channels)):
        s = f"tokenizer.stages.{i}"
        x = conv2d(x, p[f"{s}.conv.weight"], 1, 1)
        x = _maxpool2(qcfs(_bn(x, p, f"{s}.bn", eps), float(p[f"{s}.quant.lam"]), L))
    x = _bn(conv2d(x, p["tokenizer.proj.conv.weight"], 1, 1), p, "tokenizer.proj.bn", eps) + p["tokenizer.pos"]
    r = qcfs(x, float(p["tokenizer.quant.lam"]), L).reshape(x.shape[0], cfg.dim, -1)  # (B, D, N)
    B, D, N = r.shape
    H, dh = cfg.heads, cfg.head_dim

    def linear(z: np.ndarray, name: str) -> np.ndarray:
        y = np.einsum("oc,bcn->bon", p[f"{name}.linear.weight"], z)
        return _bn(y, p, f"{name}.bn", eps)

    for b in range(cfg.blocks):
        pre = f"blocks.{b}"
        q, k, v = (qcfs(linear(r, f"{pre}.{n}"), float(p[f"{pre}.{n}.quant.lam"]), L) for n in "qkv")
        qh, kh, vh = (t.reshape(B, H, dh, N) for t in (q, k, v))
        scores = cfg.s_value * np.einsum("bhci,bhcj->bhij", qh, kh) / cfg.n_value
        att = qcfs(scores, float(p[f"{pre}.attn_quant.lam"]), L)
        o = np.einsum("bhij,bhcj->bhci", att, vh).reshape(B, D, N)
        o = qcfs(o, float(p[f"{pre}.o_quant.lam"]), L)
        r = qcfs(r + linear(o, f"{pre}.proj"), float(p[f"{pre}.res1_quant.lam"]), L)
        h = qcfs(linear(r, f"{pre}.fc1"), float(p[f"{pre}.fc1.quant.lam"]), L)
        r = qcfs(r + linear(h, f"{pre}.fc2"), float(p[f"{pre}.res2_quant.lam"]), L)
    return r.mean(axis=2) @ p["head.weight"].T + p["head.bias"]
