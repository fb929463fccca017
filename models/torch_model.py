"""The conversion-oriented transformer in PyTorch, for quantization-aware training.

Needs the optional ``train`` extra (``pip install 'spikeforge[train]'``). The forward pass is
the one written out in :mod:`spikeforge.models.architecture`; parameter names are those the
checkpoint format and the converter expect. :func:`to_checkpoint` turns a trained module into
a :class:`FloatCheckpoint` (numpy), refusing modules the converter cannot handle by name.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .architecture import ModelConfig
from .checkpoint import FloatCheckpoint
from .errors import ConversionError

__all__ = ["QCFS", "CSDTransformer", "calibrate_thresholds", "to_checkpoint"]


class _FloorSTE(torch.autograd.Function):
    """``floor`` with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad


class QCFS(nn.Module):
    """QCFS quantizer ``h(z) = lambda * clip(floor(z L / lambda + 1/2) / L, 0, 1)``, learnable lambda."""

    def __init__(self, levels: int, init: float = 2.0) -> None:
        super().__init__()
        self.levels = levels
        self.lam = nn.Parameter(torch.tensor(float(init)))
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            # data-driven start: lambda at the 99th percentile of the positive pre-activations
            pos = x.detach().clamp(min=0).flatten()
            self.lam.data.fill_(max(float(torch.quantile(pos[:1_000_000], 0.99)), 1e-3))
        x = torch.clamp(x / self.lam, 0.0, 1.0)
        return _FloorSTE.apply(x * self.levels + 0.5) / self.levels * self.lam


class _ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, levels: int | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        if levels is not None:
            self.quant = QCFS(levels)


class _LinearBN(nn.Module):
    """Linear layer over the tokens of a ``(B, C, N)`` tensor, then BatchNorm over channels."""

    def __init__(self, c_in: int, c_out: int, levels: int | None) -> None:
        super().__init__()
        self.linear = nn.Linear(c_in, c_out, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        if levels is not None:
            self.quant = QCFS(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(torch.einsum("oc,bcn->bon", self.linear.weight, x))
        return self.quant(y) if hasattr(self, "quant") else y


class _Tokenizer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        L = cfg.levels
        chans = (cfg.image_shape[0],) + cfg.tokenizer_channels
        self.stages = nn.ModuleList(_ConvBN(chans[i], chans[i + 1], L) for i in range(len(cfg.tokenizer_channels)))
        self.proj = _ConvBN(chans[-1], cfg.dim, None)
        self.pos = nn.Parameter(torch.zeros(cfg.dim, *cfg.token_grid))
        self.quant = QCFS(L)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for st in self.stages:
            x = self.pool(st.quant(st.bn(st.conv(x))))
        x = self.proj.bn(self.proj.conv(x)) + self.pos
        return self.quant(x).flatten(2)  # (B, D, N)


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        L, D = cfg.levels, cfg.dim
        self.cfg = cfg
        self.q, self.k, self.v = (_LinearBN(D, D, L) for _ in range(3))
        self.attn_quant = QCFS(L)
        self.o_quant = QCFS(L)
        self.proj = _LinearBN(D, D, None)
        self.res1_quant = QCFS(L)
        self.fc1 = _LinearBN(D, cfg.mlp_hidden, L)
        self.fc2 = _LinearBN(cfg.mlp_hidden, D, None)
        self.res2_quant = QCFS(L)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, D, N = r.shape
        H, dh = cfg.heads, cfg.head_dim
        q, k, v = (m(r).reshape(B, H, dh, N) for m in (self.q, self.k, self.v))
        scores = cfg.s_value * torch.einsum("bhci,bhcj->bhij", q, k) / cfg.n_value
        att = self.attn_quant(scores)  # QCFS clips at 0: NReLU then quantize
        o = self.o_quant(torch.einsum("bhij,bhcj->bhci", att, v).reshape(B, D, N))
        r = self.res1_quant(r + self.proj(o))
        return self.res2_quant(r + self.fc2(self.fc1(r)))


class CSDTransformer(nn.Module):
    """Conversion-oriented transformer; input: float images ``x / input_max``, ``(B, C, H, W)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = _Tokenizer(cfg)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.blocks))
        self.head = nn.Linear(cfg.dim, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.tokenizer(x)
        for blk in self.blocks:
            r = blk(r)
        return self.head(r.mean(dim=2))


def calibrate_thresholds(model: nn.Module, x: torch.Tensor) -> None:
    """Set every QCFS threshold from one forward pass over ``x`` (layer by layer, in order)."""
    quants = [m for m in model.modules() if isinstance(m, QCFS)]
    for q in quants:
        q.calibrating = True
    with torch.no_grad():
        model(x)
    for q in quants:
        q.calibrating = False


_SUPPORTED = (
    CSDTransformer,
    _Tokenizer,
    _Block,
    _ConvBN,
    _LinearBN,
    QCFS,
    nn.ModuleList,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
)
_REASONS = {
    nn.GELU: "GELU is not a quantized ReLU; CSDformer replaces it with ReLU (or use the MBE path)",
    nn.LayerNorm: "LayerNorm cannot be folded into a linear layer; CSDformer uses BatchNorm after each linear layer",
    nn.Softmax: "softmax needs run-time division; CSDformer uses NReLU attention",
    nn.Dropout: "dropout has no spiking equivalent; remove it (or call model.eval() and drop the module)",
}


def to_checkpoint(model: nn.Module, metrics: dict | None = None) -> FloatCheckpoint:
    """Turn a trained :class:`CSDTransformer` into a numpy :class:`FloatCheckpoint`.

    Raises
    ------
    ConversionError
        A module the converter cannot handle, named with the reason.
    """
    for name, mod in model.named_modules():
        if not isinstance(mod, _SUPPORTED):
            why = next((r for t, r in _REASONS.items() if isinstance(mod, t)), "the converter has no rule for it")
            raise ConversionError(f"layer {name!r} ({type(mod).__name__}) cannot be converted: {why}.")
    if not isinstance(model, CSDTransformer):
        raise ConversionError(f"model is a {type(model).__name__}, not a CSDTransformer.")
    params = {
        k: v.detach().cpu().numpy().astype(np.float64)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    return FloatCheckpoint(config=model.cfg, params=params, metrics=dict(metrics or {}))
