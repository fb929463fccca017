"""Hyper-parameters of the conversion-oriented transformer (CSDformer style).

The network, as trained (PyTorch, :mod:`spikeforge.models.torch_model`) and as mirrored in
numpy (:mod:`spikeforge.models.float_model`)::

    x = image / input_max
    tokenizer stage i:  x = maxpool2( Q( BN( conv3x3(x) ) ) )
    tokens:             r = Q( BN( conv3x3(x) ) + pos )            # (dim, H, W), N = H*W tokens
    block:              q, k, v = Q( BN( W_{q,k,v} r ) )            # linear over tokens
                        att = Q( NReLU( s q_h k_h^T ) )             # NReLU(x) = ReLU(x) / n
                        o   = Q( att_h v_h )
                        r   = Q( r + BN( W_proj o ) )               # residual, re-quantized
                        h   = Q( BN( W_fc1 r ) )
                        r   = Q( r + BN( W_fc2 h ) )
    head:               logits = W_head mean_tokens(r) + b

``Q`` is the QCFS quantizer with ``levels`` levels and a learnable threshold per layer.
Departure from the paper, documented in ``docs/conversion.md``: the residual stream is
re-quantized after each residual add, so the skip path carries spikes through an identity
projection with a delay buffer instead of a real-valued sum stored in every later layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConversionError

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a conversion-oriented transformer.

    Attributes
    ----------
    image_shape : tuple of int
        ``(channels, height, width)`` of the input.
    input_max : int
        Inputs are integers in ``0..input_max``; the float network sees ``x / input_max``.
    tokenizer_channels : tuple of int
        Output channels of each conv + BN + QCFS + 2x2 max-pool stage.
    dim, heads, mlp_hidden, blocks, classes : int
        Transformer sizes.
    levels : int
        QCFS quantization levels ``L``.
    nrelu_n : float or None
        The ``n`` of NReLU; ``None`` means the number of tokens.
    nrelu_scale : float or None
        The ``s`` multiplying ``Q K^T``; ``None`` means ``1 / sqrt(dim / heads)``.
    activation, norm, attention : str
        Must be ``"relu"``, ``"batchnorm"`` and ``"nrelu"`` for exact conversion; other values
        describe networks this converter refuses, with the reason.
    bn_eps : float
        BatchNorm epsilon.
    """

    image_shape: tuple[int, int, int] = (1, 8, 8)
    input_max: int = 16
    tokenizer_channels: tuple[int, ...] = (16,)
    dim: int = 32
    heads: int = 2
    mlp_hidden: int = 64
    blocks: int = 2
    classes: int = 10
    levels: int = 4
    nrelu_n: float | None = None
    nrelu_scale: float | None = None
    activation: str = "relu"
    norm: str = "batchnorm"
    attention: str = "nrelu"
    bn_eps: float = 1e-5
    architecture: str = field(default="csdformer")

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))
        object.__setattr__(self, "tokenizer_channels", tuple(int(v) for v in self.tokenizer_channels))
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ConversionError(f"image_shape must be (channels, height, width) >= 1, got {self.image_shape}.")
        for key in ("dim", "heads", "mlp_hidden", "classes", "levels", "input_max"):
            if int(getattr(self, key)) < 1:
                raise ConversionError(f"config {key} must be >= 1, got {getattr(self, key)}.")
        if int(self.blocks) < 0:
            raise ConversionError(f"config blocks must be >= 0, got {self.blocks}.")
        if self.dim % self.heads:
            raise ConversionError(f"dim ({self.dim}) must be divisible by heads ({self.heads}).")
        h, w = self.token_grid
        if h < 1 or w < 1:
            raise ConversionError(
                f"{len(self.tokenizer_channels)} max-pool stages shrink a {self.image_shape[1:]} image to nothing."
            )

    @property
    def token_grid(self) -> tuple[int, int]:
        """``(H, W)`` of the token grid after the tokenizer's max-pools."""
        f = 2 ** len(self.tokenizer_channels)
        return self.image_shape[1] // f, self.image_shape[2] // f

    @property
    def tokens(self) -> int:
        """Number of tokens ``N``."""
        h, w = self.token_grid
        return h * w

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.dim // self.heads

    @property
    def n_value(self) -> float:
        """NReLU divisor ``n``."""
        return float(self.tokens if self.nrelu_n is None else self.nrelu_n)

    @property
    def s_value(self) -> float:
        """Attention scale ``s``."""
        return 1.0 / math.sqrt(self.head_dim) if self.nrelu_scale is None else float(self.nrelu_scale)

    @property
    def input_bits(self) -> int:
        """Bits of the unsigned integer input."""
        return max(1, int(self.input_max).bit_length())

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a dictionary, refusing unknown keys by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConversionError(f"model config has unknown key(s) {', '.join(unknown)}.")
        return cls(**data)
