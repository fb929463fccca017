"""A standard Vision Transformer (GELU, LayerNorm, softmax) in numpy, with pluggable operators.

This is the float network the training-free MBE conversion starts from (``tiny-digits-vit``):

    tokens  = patches(x / input_max) @ W_embed^T + b_embed + pos          (P x P patches)
    per block:  h = h + Proj(MHSA(LN1(h)));  h = h + FC2(GELU(FC1(LN2(h))))   (or SiLU)
    MHSA:       A = softmax(s Q K^T) with s = 1 / sqrt(d_head);  out = A V
    logits  = Head(LN_f(mean over tokens h))

Every non-linear or activation x activation operator goes through an :class:`Ops` object, so
the same code runs the float model, range calibration and the MBE network
(:mod:`spikeforge.models.mbe_convert`). Weights are stored as ``.npz`` with a JSON header
(``spikeforge-vit`` version 1), read without pickle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ConversionError, FileFormatError
from .mbe_fit import gelu
from .npzio import read_npz, write_npz

__all__ = [
    "FORMAT",
    "VIT_PATH",
    "FloatOps",
    "Ops",
    "ViTCheckpoint",
    "ViTConfig",
    "load_vit",
    "save_vit",
    "vit_forward",
    "vit_parameter_shapes",
]

FORMAT = "spikeforge-vit"
VIT_PATH = Path(str(resources.files(__package__).joinpath("zoo", "tiny-digits-vit.npz")))


@dataclass(frozen=True)
class ViTConfig:
    """Shape of the ViT: square ``patch`` x ``patch`` patches of a ``(C, H, W)`` image; MLP activation."""

    image_shape: tuple[int, int, int] = (1, 8, 8)
    patch: int = 2
    dim: int = 32
    heads: int = 2
    blocks: int = 2
    mlp_hidden: int = 64
    classes: int = 10
    input_max: float = 16.0
    ln_eps: float = 1e-5
    activation: str = "gelu"

    def __post_init__(self) -> None:
        c, h, w = self.image_shape
        if self.patch < 1 or h % self.patch or w % self.patch:
            raise ConversionError(f"ViT patch size {self.patch} must divide the image size {h} x {w}.")
        if self.activation not in ("gelu", "silu"):
            raise ConversionError(f"ViT activation must be 'gelu' or 'silu', got {self.activation!r}.")
        if self.dim % self.heads:
            raise ConversionError(f"ViT dim {self.dim} must be a multiple of the number of heads {self.heads}.")

    @property
    def tokens(self) -> int:
        """Number of patches."""
        _, h, w = self.image_shape
        return (h // self.patch) * (w // self.patch)

    @property
    def patch_dim(self) -> int:
        """Pixels per patch (``C P P``)."""
        return self.image_shape[0] * self.patch * self.patch


def vit_parameter_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter (PyTorch state-dict names of :mod:`.vit_train`)."""
    d, m = cfg.dim, cfg.mlp_hidden
    spec: dict[str, tuple[int, ...]] = {
        "embed.weight": (d, cfg.patch_dim),
        "embed.bias": (d,),
        "pos": (cfg.tokens, d),
    }
    for b in range(cfg.blocks):
        p = f"blocks.{b}"
        for ln in ("ln1", "ln2"):
            spec[f"{p}.{ln}.weight"] = (d,)
            spec[f"{p}.{ln}.bias"] = (d,)
        for name, co, ci in (("qkv", 3 * d, d), ("proj", d, d), ("fc1", m, d), ("fc2", d, m)):
            spec[f"{p}.{name}.weight"] = (co, ci)
            spec[f"{p}.{name}.bias"] = (co,)
    spec.update({"ln_f.weight": (d,), "ln_f.bias": (d,), "head.weight": (cfg.classes, d), "head.bias": (cfg.classes,)})
    return spec


@dataclass(frozen=True)
class ViTCheckpoint:
    """A trained ViT: configuration, parameters by name, and metrics measured at training."""

    config: ViTConfig
    params: dict[str, np.ndarray]
    metrics: dict[str, Any] = field(default_factory=dict)


def save_vit(path: str | Path, ckpt: ViTCheckpoint) -> None:
    """Write ``ckpt`` as ``.npz`` (float32 parameters, JSON header)."""
    cfg = asdict(ckpt.config)
    header = {"format": FORMAT, "version": 1, "config": cfg, "metrics": ckpt.metrics}
    write_npz(path, header, {k: np.asarray(v, dtype=np.float32) for k, v in ckpt.params.items()})


def load_vit(path: str | Path = VIT_PATH) -> ViTCheckpoint:
    """Read a ViT checkpoint (default: the bundled ``tiny-digits-vit``) and check every parameter's shape."""
    header, arrays = read_npz(path, expected_format=FORMAT)
    if header.get("version") != 1:
        raise FileFormatError(f"{path}: unsupported {FORMAT} version {header.get('version')!r}.")
    try:
        raw = dict(header["config"])
        raw["image_shape"] = tuple(raw["image_shape"])
        cfg = ViTConfig(**raw)
    except (KeyError, TypeError) as exc:
        raise FileFormatError(f"{path}: its ViT configuration is incomplete or malformed ({exc}).") from None
    spec = vit_parameter_shapes(cfg)
    missing = sorted(set(spec) - set(arrays))
    if missing:
        raise FileFormatError(f"{path}: missing parameter(s) {', '.join(missing[:5])}.")
    for k, shape in spec.items():
        if arrays[k].shape != shape:
            raise FileFormatError(f"{path}: parameter {k} has shape {arrays[k].shape}, expected {shape}.")
    params = {k: arrays[k].astype(np.float64) for k in spec}
    return ViTCheckpoint(cfg, params, dict(header.get("metrics", {})))


class Ops(Protocol):
    """The operators a ViT forward pass delegates; ``site`` names each call (for calibration and logs)."""

    def gelu(self, x: np.ndarray, site: str) -> np.ndarray: ...

    def silu(self, x: np.ndarray, site: str) -> np.ndarray: ...

    def softmax(self, x: np.ndarray, site: str) -> np.ndarray: ...

    def layernorm(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, site: str) -> np.ndarray: ...

    def matmul(self, a: np.ndarray, b: np.ndarray, site: str) -> np.ndarray: ...


class FloatOps:
    """The float operators (the ANN)."""

    def gelu(self, x: np.ndarray, site: str) -> np.ndarray:
        return gelu(x)

    def silu(self, x: np.ndarray, site: str) -> np.ndarray:
        return x / (1.0 + np.exp(-x))

    def softmax(self, x: np.ndarray, site: str) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def layernorm(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, site: str) -> np.ndarray:
        xc = x - x.mean(axis=-1, keepdims=True)
        return xc / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps) * gamma + beta

    def matmul(self, a: np.ndarray, b: np.ndarray, site: str) -> np.ndarray:
        return a @ b


def _patches(x: np.ndarray, cfg: ViTConfig) -> np.ndarray:
    b = x.shape[0]
    c, h, w = cfg.image_shape
    p = cfg.patch
    x = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, cfg.tokens, cfg.patch_dim)


def vit_forward(ckpt: ViTCheckpoint, x: np.ndarray, ops: Ops | None = None) -> np.ndarray:
    """Logits of a batch of images ``(batch, C, H, W)`` (or ``(batch, H, W)``) through ``ops`` (default float)."""
    cfg, P = ckpt.config, ckpt.params
    ops = FloatOps() if ops is None else ops
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1:] != cfg.image_shape:
        raise ConversionError(f"the ViT expects images shaped {cfg.image_shape}, got {x.shape[1:]}.")
    h = _patches(x / cfg.input_max, cfg) @ P["embed.weight"].T + P["embed.bias"] + P["pos"]
    nh, dh = cfg.heads, cfg.dim // cfg.heads
    scale = 1.0 / math.sqrt(dh)
    for i in range(cfg.blocks):
        p = f"blocks.{i}"
        a = ops.layernorm(h, P[f"{p}.ln1.weight"], P[f"{p}.ln1.bias"], cfg.ln_eps, f"{p}.ln1")
        qkv = a @ P[f"{p}.qkv.weight"].T + P[f"{p}.qkv.bias"]
        q, k, v = (qkv[..., j * cfg.dim : (j + 1) * cfg.dim] for j in range(3))
        q, k, v = (t.reshape(t.shape[0], cfg.tokens, nh, dh).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2), f"{p}.attn.qk") * scale
        att = ops.softmax(scores, f"{p}.attn.softmax")
        o = ops.matmul(att, v, f"{p}.attn.av").transpose(0, 2, 1, 3).reshape(h.shape)
        h = h + o @ P[f"{p}.proj.weight"].T + P[f"{p}.proj.bias"]
        a = ops.layernorm(h, P[f"{p}.ln2.weight"], P[f"{p}.ln2.bias"], cfg.ln_eps, f"{p}.ln2")
        act = getattr(ops, cfg.activation)
        z = act(a @ P[f"{p}.fc1.weight"].T + P[f"{p}.fc1.bias"], f"{p}.mlp.{cfg.activation}")
        h = h + z @ P[f"{p}.fc2.weight"].T + P[f"{p}.fc2.bias"]
    pooled = ops.layernorm(h.mean(axis=1), P["ln_f.weight"], P["ln_f.bias"], cfg.ln_eps, "ln_f")
    return pooled @ P["head.weight"].T + P["head.bias"]
