"""CSDformer conversion: a float QAT checkpoint becomes an integer SNN graph.

Each QCFS quantizer becomes a population of IF/DIF neurons with ``theta = lambda``,
``v0 = theta / 2`` and ``T`` steps (``T = L`` reproduces the quantizer); BatchNorm is folded
into the layer before it; NReLU attention becomes two spike x spike ``product`` projections
(temporal decomposition); max-pool becomes a max-pool unit; residual adds become identity
projections with the delay buffers that align them with the branch.

Integer scaling, per target population ``P`` with threshold ``lambda_P``: every incoming
term has an effective float weight ``w`` acting on the source's total output (``lambda_src``
per spike, ``1 / input_max`` per input unit); one scale ``S_P`` maps the largest ``|w|`` to
``2**(weight_bits-1) - 1``, and::

    W_int = round(S_P w),  b_int = round(S_P b),  theta = round(S_P lambda_P),  v0 = theta // 2

so that the integer pre-activation ``W_int x + T b_int + v0`` over ``theta`` approximates
``T z / lambda + 1/2`` of the QCFS quantizer to the weights' precision. A population fed only
by a spike x spike product uses ``w_int = 1`` (additions only) when that keeps
``theta >= 2**(weight_bits-1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .architecture import ModelConfig
from .checkpoint import FloatCheckpoint, expected_parameters
from .errors import ConversionError
from .graph import (
    ConvProjection,
    IdentityProjection,
    InputPopulation,
    MaxPoolPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolDenseProjection,
    PoolProjection,
    ProductProjection,
    SNNGraph,
    membrane_bounds,
    signed_range,
)
from .quantization import fold_batchnorm, integer_scale, round_half_away

__all__ = ["convert", "attention_indices", "check_checkpoint"]

_UNSUPPORTED = {
    "activation": (
        "relu",
        "CSDformer conversion is exact only for ReLU-family activations; GELU and others need the MBE path",
    ),
    "norm": (
        "batchnorm",
        "LayerNorm normalises per token at run time and cannot be folded into a "
        "linear layer; CSDformer places BatchNorm after each linear layer",
    ),
    "attention": (
        "nrelu",
        "softmax needs a run-time division and exponent; CSDformer replaces it with NReLU(s Q K^T) = ReLU(s Q K^T) / n",
    ),
}


def check_checkpoint(ckpt: FloatCheckpoint) -> None:
    """Refuse, with the layer's name and the reason, anything the converter cannot handle."""
    cfg = ckpt.config
    if cfg.architecture != "csdformer":
        raise ConversionError(f"architecture {cfg.architecture!r} is not a CSDformer-style transformer.")
    for key, (ok, why) in _UNSUPPORTED.items():
        value = getattr(cfg, key)
        if value != ok:
            raise ConversionError(f"{key} {value!r} cannot be converted exactly: {why}.")
    spec = expected_parameters(cfg)
    extra = sorted(k for k in ckpt.params if k not in spec and not k.endswith("num_batches_tracked"))
    if extra:
        layer = extra[0].rsplit(".", 1)[0]
        raise ConversionError(
            f"layer {layer!r} (parameter {extra[0]!r}) is not part of the CSDformer architecture; "
            "the converter cannot handle it. Remove it or express it with the supported layers."
        )
    for key, shape in spec.items():
        if key not in ckpt.params:
            raise ConversionError(f"the checkpoint lacks parameter {key!r} (layer {key.rsplit('.', 1)[0]!r}).")
        arr = np.asarray(ckpt.params[key])
        if arr.shape != shape:
            raise ConversionError(f"parameter {key!r} has shape {arr.shape}, the config implies {shape}.")
        if not np.all(np.isfinite(arr)):
            raise ConversionError(f"parameter {key!r} holds NaN or infinite values.")
        if key.endswith(".lam") and float(arr) <= 0:
            raise ConversionError(f"quantizer threshold {key!r} is {float(arr)}; it must be > 0.")


def attention_indices(dim: int, heads: int, n: int) -> dict[str, np.ndarray]:
    """Index maps of the two attention products for ``(dim, N)`` token populations.

    Token populations are stored channel-major: neuron ``c * N + i`` is channel ``c`` of token
    ``i``; score populations ``(heads, N, N)`` store ``h * N * N + i * N + j``.

    Returns
    -------
    dict
        ``q`` (H, N, dh), ``kt`` (H, dh, N), ``scores`` (H, N, N) for ``Q K^T``; ``att``
        (H, N, N), ``v`` (H, N, dh) and ``o`` (H, N, dh) for ``Att V``.
    """
    dh = dim // heads
    ch = np.arange(dim).reshape(heads, dh)  # (H, dh) channel ids
    tok = np.arange(n)
    q = ch[:, None, :] * n + tok[None, :, None]  # (H, N, dh)
    scores = np.arange(heads * n * n).reshape(heads, n, n)
    return {
        "q": q,
        "kt": q.transpose(0, 2, 1),
        "scores": scores,
        "att": scores,
        "v": q,
        "o": q,
    }


@dataclass
class _Term:
    kind: str
    src: str
    w: Any  # float weights acting on the source's unit value
    extra: dict[str, Any] = field(default_factory=dict)


class _Builder:
    """Accumulates populations and projections with integer scaling and aligned delays."""

    def __init__(self, T: int, weight_bits: int, v_bits: int, neuron: str, delay: int | None) -> None:
        self.T, self.wb, self.vb = T, weight_bits, v_bits
        self.neuron, self.delay = neuron, delay
        self.pops: list[Any] = []
        self.projs: list[Any] = []
        self.unit: dict[str, float] = {}  # float value of one unit of a population's output
        self.out_start: dict[str, int] = {}
        self.spiking: dict[str, bool] = {}
        self.scales: dict[str, float] = {}
        self.max_total: dict[str, int] = {}  # most a source neuron emits over its window
        self.size: dict[str, int] = {}

    def add_input(self, name: str, shape: tuple[int, ...], bits: int, unit: float) -> None:
        self.pops.append(InputPopulation(name, shape, value_bits=bits))
        self.max_total[name] = self.T * ((1 << bits) - 1)
        self.size[name] = int(np.prod(shape))
        self.unit[name], self.out_start[name], self.spiking[name] = unit, 0, False

    def add_maxpool(self, name: str, src: str, shape: tuple[int, ...]) -> None:
        arrival = self.out_start[src] + 1
        self.pops.append(MaxPoolPopulation(name, shape))
        self.max_total[name], self.size[name] = self.T, int(np.prod(shape))
        self.projs.append(PoolProjection(src, name, kernel=2, stride=2))
        self.unit[name], self.out_start[name], self.spiking[name] = self.unit[src], arrival, True

    def _arrival(self, terms: list[_Term]) -> int:
        return max(
            self.out_start[s] + 1 for t in terms for s in ([t.src] + ([t.extra["b"]] if t.kind == "product" else []))
        )

    def _scale(self, name: str, terms: list[_Term], lam: float | None) -> tuple[float, list[Any]]:
        eff = []
        for t in terms:
            if t.kind == "product":
                eff.append(np.asarray(t.w, np.float64))  # already per pair of source spikes
            else:
                eff.append(np.asarray(t.w, np.float64) * self.unit[t.src])
        peak = max(float(np.max(np.abs(e))) for e in eff)
        if peak == 0 or not np.isfinite(peak):
            raise ConversionError(f"every weight into {name!r} is zero or not finite; the layer is dead.")
        scale = integer_scale(peak, self.wb)
        if lam is not None and len(terms) == 1 and terms[0].kind == "product":
            if lam / peak >= (1 << (self.wb - 1)):
                scale = 1.0 / peak  # w_int = 1: spike x count products need additions only
        return scale, eff

    def _bound(self, terms: list[_Term], eff: list[np.ndarray], bias: np.ndarray, lam: float | None) -> float:
        """Float bound on ``|v|`` per unit of scale (mirrors :func:`membrane_bounds`)."""
        T = self.T
        total = T * float(np.max(np.abs(bias))) + (lam or 0.0) / 2
        for t, e in zip(terms, eff):
            m = self.max_total[t.src]
            if t.kind == "conv":
                total += float(np.abs(e).sum(axis=(1, 2, 3)).max()) * m
            elif t.kind == "pool_dense":
                spatial = self.size[t.src] // e.shape[1]
                total += float(np.abs(e).sum(axis=1).max()) * spatial * m
            elif t.kind == "identity":
                total += abs(float(e)) * m
            elif t.kind == "product":
                total += abs(float(e)) * t.extra["a_index"].shape[2] * T * T
        return total

    def add_target(
        self, name: str, shape: tuple[int, ...], terms: list[_Term], bias: np.ndarray, lam: float | None
    ) -> None:
        """A neuron population (``lam`` given) or the output accumulator (``lam`` None)."""
        T = self.T
        arrival = self._arrival(terms)
        scale, eff = self._scale(name, terms, lam)
        if lam is None:
            # The logit accumulator's static bound (every input neuron firing every step) is far
            # above real values: take the largest scale whose bound fits v_bits (argmax is unchanged
            # by scale, precision drops only there). Neuron populations refuse instead (below).
            bound = self._bound(terms, eff, bias, lam) * scale
            limit = 0.9 * signed_range(self.vb)[1]  # margin for rounding each weight
            if bound > limit:
                scale *= limit / bound
        self.scales[name] = scale
        size = int(np.prod(shape))
        for t, e in zip(terms, eff):
            delay = arrival - (self.out_start[t.src] + 1)
            if t.kind == "conv":
                self.projs.append(ConvProjection(t.src, name, round_half_away(scale * e), 1, t.extra["padding"], delay))
            elif t.kind == "identity":
                self.projs.append(IdentityProjection(t.src, name, int(round_half_away(scale * e)), delay))
            elif t.kind == "pool_dense":
                self.projs.append(PoolDenseProjection(t.src, name, round_half_away(scale * e), delay))
            elif t.kind == "product":
                b = t.extra["b"]
                self.projs.append(
                    ProductProjection(
                        t.src,
                        b,
                        name,
                        t.extra["a_index"],
                        t.extra["b_index"],
                        t.extra["out_index"],
                        int(round_half_away(scale * e)),
                        delay,
                        arrival - (self.out_start[b] + 1),
                    )
                )
        b_int = round_half_away(scale * np.broadcast_to(np.asarray(bias, np.float64), shape).reshape(-1))
        if lam is None:
            self.pops.append(OutputPopulation(name, shape, bias=b_int))
            self.out_start[name], self.spiking[name] = arrival, False
            return
        theta = max(1, int(round_half_away(scale * lam)))
        if theta > signed_range(self.vb)[1]:
            raise ConversionError(f"threshold of {name!r} ({theta}) does not fit in {self.vb}-bit membranes.")
        spike_fed = any(self.spiking[t.src] for t in terms)
        if self.neuron == "if" or not spike_fed:
            d = 0  # constant (analog) input needs no delay: IF is exact for it
        else:
            d = T - 1 if self.delay is None else self.delay
        self.pops.append(
            NeuronPopulation(
                name,
                shape,
                threshold=np.full(size, theta, np.int64),
                bias=b_int,
                v0=np.full(size, theta // 2, np.int64),
                delay=d,
            )
        )
        self.unit[name], self.out_start[name], self.spiking[name] = lam, arrival + d, True
        self.max_total[name], self.size[name] = T, size


def convert(
    ckpt: FloatCheckpoint,
    timesteps: int | None = None,
    weight_bits: int = 8,
    v_bits: int = 24,
    neuron: Literal["dif", "if"] = "dif",
    delay: int | None = None,
) -> SNNGraph:
    """Convert a float QAT checkpoint into an integer SNN graph.

    Parameters
    ----------
    ckpt : FloatCheckpoint
        Trained conversion-oriented transformer.
    timesteps : int, optional
        ``T``; defaults to the quantizer levels ``L`` (the exact setting).
    weight_bits : int
        Signed width of every weight (2..16).
    v_bits : int
        Signed width of membranes, thresholds and biases.
    neuron : {"dif", "if"}
        ``"dif"``: delayed IF with ``d = T - 1`` (or ``delay``) on every population fed by
        spikes, which makes the SNN equal the integer ANN; ``"if"``: plain IF everywhere.
    delay : int, optional
        DIF delay to use instead of ``T - 1`` (for studying the delay/accuracy trade-off).

    Returns
    -------
    SNNGraph
    """
    if timesteps is not None and int(timesteps) < 1:
        raise ConversionError(f"timesteps must be >= 1, got {timesteps}; use T = L for exact conversion.")
    if neuron not in ("dif", "if"):
        raise ConversionError(f"neuron must be 'dif' or 'if', got {neuron!r}.")
    if delay is not None and int(delay) < 0:
        raise ConversionError(f"delay must be >= 0, got {delay}.")
    if not 2 <= int(weight_bits) <= 16:
        raise ConversionError(f"weight_bits must be in 2..16, got {weight_bits}.")
    check_checkpoint(ckpt)
    cfg: ModelConfig = ckpt.config
    T = int(timesteps or cfg.levels)
    p = {k: np.asarray(v, np.float64) for k, v in ckpt.params.items()}
    bld = _Builder(T, int(weight_bits), int(v_bits), neuron, delay)
    eps = cfg.bn_eps

    def folded(layer: str, bn: str, key: str = "weight") -> tuple[np.ndarray, np.ndarray]:
        return fold_batchnorm(
            p[f"{layer}.{key}"],
            None,
            p[f"{bn}.weight"],
            p[f"{bn}.bias"],
            p[f"{bn}.running_mean"],
            p[f"{bn}.running_var"],
            eps,
        )

    c, h, w = cfg.image_shape
    bld.add_input("input", (c, h, w), cfg.input_bits, 1.0 / cfg.input_max)
    src = "input"
    for i, ch in enumerate(cfg.tokenizer_channels):
        pre = f"tokenizer.stages.{i}"
        wf, bf = folded(f"{pre}.conv", f"{pre}.bn")
        name = f"tok.{i}"
        bld.add_target(
            name, (ch, h, w), [_Term("conv", src, wf, {"padding": 1})], bf[:, None, None], float(p[f"{pre}.quant.lam"])
        )
        h, w = h // 2, w // 2
        bld.add_maxpool(f"{name}.pool", name, (ch, h, w))
        src = f"{name}.pool"
    wf, bf = folded("tokenizer.proj.conv", "tokenizer.proj.bn")
    D, N, H = cfg.dim, cfg.tokens, cfg.heads
    bld.add_target(
        "tok.out",
        (D, h, w),
        [_Term("conv", src, wf, {"padding": 1})],
        bf[:, None, None] + p["tokenizer.pos"],
        float(p["tokenizer.quant.lam"]),
    )
    r = "tok.out"
    idx = attention_indices(D, H, N)
    lam = lambda key: float(p[key])  # noqa: E731

    def linear(prefix: str, src_name: str) -> tuple[_Term, np.ndarray]:
        wf, bf = folded(f"{prefix}.linear", f"{prefix}.bn")
        return _Term("conv", src_name, wf[:, :, None, None], {"padding": 0}), bf[:, None, None]

    for b in range(cfg.blocks):
        pre, nb = f"blocks.{b}", f"b{b}"
        for part in "qkv":
            term, bias = linear(f"{pre}.{part}", r)
            bld.add_target(f"{nb}.{part}", (D, h, w), [term], bias, lam(f"{pre}.{part}.quant.lam"))
        lq, lk, lv = (lam(f"{pre}.{x}.quant.lam") for x in "qkv")
        l_att = lam(f"{pre}.attn_quant.lam")
        w_qk = cfg.s_value * lq * lk / (cfg.n_value * T)
        bld.add_target(
            f"{nb}.att",
            (H, N, N),
            [
                _Term(
                    "product",
                    f"{nb}.q",
                    w_qk,
                    {"b": f"{nb}.k", "a_index": idx["q"], "b_index": idx["kt"], "out_index": idx["scores"]},
                )
            ],
            np.zeros(1),
            l_att,
        )
        w_av = l_att * lv / T
        bld.add_target(
            f"{nb}.o",
            (D, h, w),
            [
                _Term(
                    "product",
                    f"{nb}.att",
                    w_av,
                    {"b": f"{nb}.v", "a_index": idx["att"], "b_index": idx["v"], "out_index": idx["o"]},
                )
            ],
            np.zeros(1),
            lam(f"{pre}.o_quant.lam"),
        )
        term, bias = linear(f"{pre}.proj", f"{nb}.o")
        bld.add_target(f"{nb}.res1", (D, h, w), [_Term("identity", r, 1.0), term], bias, lam(f"{pre}.res1_quant.lam"))
        r = f"{nb}.res1"
        term, bias = linear(f"{pre}.fc1", r)
        bld.add_target(f"{nb}.fc1", (cfg.mlp_hidden, h, w), [term], bias, lam(f"{pre}.fc1.quant.lam"))
        term, bias = linear(f"{pre}.fc2", f"{nb}.fc1")
        bld.add_target(f"{nb}.res2", (D, h, w), [_Term("identity", r, 1.0), term], bias, lam(f"{pre}.res2_quant.lam"))
        r = f"{nb}.res2"
    bld.add_target("head", (cfg.classes,), [_Term("pool_dense", r, p["head.weight"] / N)], p["head.bias"], None)

    meta = {
        "converter": "csdformer",
        "levels": cfg.levels,
        "neuron": neuron,
        "model_config": cfg.to_json(),
        "logit_scale": T * bld.scales["head"],
        "population_scales": bld.scales,
    }
    graph = SNNGraph(tuple(bld.pops), tuple(bld.projs), T, int(weight_bits), int(v_bits), meta)
    _, vhi = signed_range(int(v_bits))
    for name, bound in membrane_bounds(graph).items():
        if bound > vhi:
            raise ConversionError(
                f"membrane of {name!r} can reach {bound}, which needs {int(bound).bit_length() + 1} bits; "
                f"raise v_bits (now {v_bits}) or lower weight_bits."
            )
    return graph
