"""MBE conversion of the ViT to the integer SNN graph: softmax, LayerNorm and products on the hardware.

Algorithm 1 of the MBE paper (calibrate, fit or load, replace), ending in an
:class:`~spikeforge.models.graph.SNNGraph` that the functional executor, the mapping and the
simulator run, instead of the float functional model of :mod:`spikeforge.models.mbe_convert`.
Every population is an MBE population; every value a population carries is
``sigma * (sum of its payloads)`` with ``sigma = 2**-F`` a power of two (each unit emits its
neuron's output bias with its first payload, so no bias has to be folded into its targets).

Per block (``h`` is the residual stream; it is never a population: every consumer integrates
the linear contributions of the embedding, of every earlier attention output ``O`` and MLP
output ``G``, straight into its accumulator ``X``, which holds inputs that arrive early)::

    xc    = (I - 1/d) h                                   identity MBE            (dense)
    P_Q   = W_Q diag(gamma1) xc    (same for K, V)        identity MBE            (dense, from h)
    r     = 1 / sqrt(sum_c xc_c**2 + d eps)               invsqrt split           (product xc x xc)
    Q'    = (sqrt(d) r P_Q + W_Q beta1 + b_Q) s log2(e)   identity MBE            (product r x P_Q)
    K, V  likewise without s log2(e)
    S     = Q' K^T                                        identity MBE            (product Q' x K)
    M     = max_k S_k                                     max-pool of payloads    (pool, exact)
    E     = 2**(S - M)                                    exp2 split              (identity S, dense -M)
    R     = 1 / sum_k E_k                                 inv split               (dense, weights 1)
    EV    = E V                                           identity MBE            (product E x V)
    O     = EV R                                          identity MBE            (product EV x R)
    h    += W_proj O + b_proj
    xc2, P_F = W_fc1 diag(gamma2) xc2, r2                 as above
    G     = GELU(sqrt(d) r2 P_F + W_fc1 beta2 + b_fc1)    GELU MBE (N = 4)        (product r2 x P_F)
    h    += W_fc2 G + b_fc2

and at the end ``xc_f = (I - 1/d) mean_tokens h``, ``P_H = W_head diag(gamma_f) xc_f``,
``r_f``, ``logits = sqrt(d) r_f P_H + W_head beta_f + b_head`` (the output population).

The row maximum is a max-pool of the score encoders' payload trains by temporal decomposition
(``o[t] = max C[t] - max C[t-1]`` with running payload sums ``C``), exact, so ``S - M <= 0``
with 0 at every row's maximum and ``E`` in ``(0, 1]``; exponents below ``-k_max`` are clipped
(and counted). Departures from the functional model: ``r`` is ``1 / sqrt(sum + d eps)`` with
``sqrt(d)`` folded into its consumers; weights are quantized per target (one scale per
accumulator, ``weight_bits`` wide); every operand is encoded at ``payload_bits`` of precision
so that products fit ``v_bits`` accumulators.

Print the accuracy of the converted graph (functional executor) at several ``T``::

    python -m spikeforge.models.vit_graph --timesteps 8 12 16
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datasets import Dataset, load_digits
from .graph import (
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    MaxPoolPopulation,
    MBEPopulation,
    OutputPopulation,
    PoolProjection,
    ProductProjection,
    SNNGraph,
)
from .mbe import MBEError, MBEParams
from .mbe_convert import VIT_CACHE_PATH, _round_out
from .mbe_fit import PRIMITIVES_PATH, PrimitiveCache, gelu
from .mbe_ops import MBEPrimitives
from .vit import ViTCheckpoint, _patches, load_vit, vit_forward

__all__ = ["VitGraphOptions", "evaluate_vit_graph", "main", "operator_of", "shadow_forward", "vit_to_mbe_graph"]

LOG2E = math.log2(math.e)


@dataclass(frozen=True)
class VitGraphOptions:
    """Widths and precisions of the converted graph.

    Attributes
    ----------
    timesteps : int
        ``T`` of every MBE neuron.
    weight_bits, v_bits : int
        Widths of the graph (the hardware's ``[core]`` widths must be at least these). One weight
        scale per accumulator serves all of its sources (the embedding and every earlier block
        output feed each LayerNorm), so 8 bits cost 0.8 points of accuracy and 10 bits none
        (``docs/mbe.md`` section 6).
    payload_bits : int
        Each population's scale ``2**-F`` is chosen so its largest calibrated value is about
        ``2**payload_bits`` payload units.
    split_bits : int
        Mantissa bits of the ``inv`` and ``invsqrt`` splits' basis input.
    exp_floor : int
        ``k_max``: exponents of ``E`` below ``-k_max`` are clipped (and counted).
    n_gelu, n_bases, n_identity : int
        Bases of the GELU neurons, of ``exp2``/``inv``/``invsqrt``, and of the identity encoders.
    margin : float
        Calibrated ranges are widened by this fraction of their width on each side.
    calib_samples : int
        Training images used for calibration (the first ones).
    """

    timesteps: int = 16
    weight_bits: int = 10
    v_bits: int = 32
    payload_bits: int = 12
    split_bits: int = 16
    exp_floor: int = 12
    n_gelu: int = 4
    n_bases: int = 8
    n_identity: int = 1
    margin: float = 0.1
    calib_samples: int = 256


def _flat(v: np.ndarray) -> np.ndarray:
    return v.reshape(v.shape[0], -1)


def shadow_forward(ckpt: ViTCheckpoint, x: np.ndarray) -> dict[str, np.ndarray]:
    """The float ViT computed the way the graph decomposes it; every population's value, batched.

    Keys are population names (``b0.xc``, ``b0.pq``, ..., ``logits``) with values shaped
    ``(batch, units)`` in the graph's layout, plus ``<name>.in`` for the inputs of the GELU and
    split populations (``E``'s exponent, ``R``'s sum, ``r``'s sum of squares). The logits equal
    :func:`~spikeforge.models.vit.vit_forward`'s.
    """
    cfg, P = ckpt.config, ckpt.params
    x = np.asarray(x, np.float64)
    if x.ndim == 3:
        x = x[:, None]
    n, d, nh = cfg.tokens, cfg.dim, cfg.heads
    dh = d // nh
    sd = math.sqrt(d)
    out: dict[str, np.ndarray] = {}
    h = _patches(x / cfg.input_max, cfg) @ P["embed.weight"].T + P["embed.bias"] + P["pos"]

    def ln_parts(name: str, hv: np.ndarray, gamma: np.ndarray, mats: dict[str, np.ndarray]) -> np.ndarray:
        xc = hv - hv.mean(axis=-1, keepdims=True)
        out[f"{name}.xc"] = _flat(xc)
        for key, w in mats.items():
            out[f"{name}.{key}"] = _flat(xc @ (w * gamma).T)
        ss = (xc * xc).sum(axis=-1) + d * cfg.ln_eps  # (batch, tokens) or (batch,) when pooled
        r = 1.0 / np.sqrt(ss)
        out[f"{name}.r.in"], out[f"{name}.r"] = ss.reshape(len(ss), -1), r.reshape(len(r), -1)
        return r

    for b in range(cfg.blocks):
        p, name = f"blocks.{b}", f"b{b}"
        g1, be1 = P[f"{p}.ln1.weight"], P[f"{p}.ln1.bias"]
        wq, wk, wv = (P[f"{p}.qkv.weight"][j * d : (j + 1) * d] for j in range(3))
        bq, bk, bv = (P[f"{p}.qkv.bias"][j * d : (j + 1) * d] for j in range(3))
        r = ln_parts(f"{name}.ln1", h, g1, {"pq": wq, "pk": wk, "pv": wv})
        scale = LOG2E / math.sqrt(dh)
        q = (sd * r[..., None] * (out[f"{name}.ln1.pq"].reshape(h.shape)) + wq @ be1 + bq) * scale
        k = sd * r[..., None] * out[f"{name}.ln1.pk"].reshape(h.shape) + wk @ be1 + bk
        v = sd * r[..., None] * out[f"{name}.ln1.pv"].reshape(h.shape) + wv @ be1 + bv
        for key, val in (("q", q), ("k", k), ("v", v)):
            out[f"{name}.{key}"] = _flat(val)
        qh, kh, vh = (t.reshape(t.shape[0], n, nh, dh).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = qh @ kh.transpose(0, 1, 3, 2)  # (batch, heads, n, n), log2 units
        out[f"{name}.s"] = _flat(scores)
        z = scores - scores.max(axis=-1, keepdims=True)
        out[f"{name}.e.in"] = _flat(z)
        e = np.exp2(z)
        out[f"{name}.e"] = _flat(e)
        s = e.sum(axis=-1)  # (batch, heads, n)
        out[f"{name}.rs.in"] = _flat(s)
        out[f"{name}.rs"] = _flat(1.0 / s)
        ev = e @ vh  # (batch, heads, n, dh)
        out[f"{name}.ev"] = _flat(ev.transpose(0, 2, 1, 3))
        o = (ev / s[..., None]).transpose(0, 2, 1, 3).reshape(h.shape)
        out[f"{name}.o"] = _flat(o)
        h = h + o @ P[f"{p}.proj.weight"].T + P[f"{p}.proj.bias"]
        g2, be2 = P[f"{p}.ln2.weight"], P[f"{p}.ln2.bias"]
        w1, b1 = P[f"{p}.fc1.weight"], P[f"{p}.fc1.bias"]
        r2 = ln_parts(f"{name}.ln2", h, g2, {"pf": w1})
        gin = sd * r2[..., None] * out[f"{name}.ln2.pf"].reshape(h.shape[0], n, -1) + w1 @ be2 + b1
        out[f"{name}.g.in"] = _flat(gin)
        act = gelu(gin)
        out[f"{name}.g"] = _flat(act)
        h = h + act @ P[f"{p}.fc2.weight"].T + P[f"{p}.fc2.bias"]
    gf, bf = P["ln_f.weight"], P["ln_f.bias"]
    rf = ln_parts("final", h.mean(axis=1), gf, {"ph": P["head.weight"]})
    out["logits"] = sd * rf[:, None] * out["final.ph"] + P["head.weight"] @ bf + P["head.bias"]
    return out


@dataclass
class _Builder:
    """Populations and projections of the graph under construction, with each population's scale."""

    opts: VitGraphOptions
    ranges: dict[str, tuple[float, float]]
    pops: list[Any] = field(default_factory=list)
    projs: list[Any] = field(default_factory=list)
    sigma: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def _frac(self, peak: float) -> int:
        """``F`` with ``peak * 2**F`` about ``2**payload_bits``."""
        return self.opts.payload_bits - math.ceil(math.log2(max(peak, 1e-9)))

    def _tables(self, params: MBEParams, q: float, frac: int) -> dict[str, Any]:
        vth, reset, inten = params.kernels()
        scale = 2.0**frac
        return {
            "vth": np.rint(vth / q).astype(np.int64),
            "reset": np.rint(reset / q).astype(np.int64),
            "intensity": np.rint(inten * scale).astype(np.int64),
            "offset": np.rint(params.offset / q).astype(np.int64),
            "out_bias": int(round(params.bias * scale)),
        }

    def _bias(self, value: np.ndarray, q: float, size: int) -> np.ndarray:
        T = self.opts.timesteps
        return np.broadcast_to(np.rint(np.asarray(value, np.float64) / (q * T)), (size,)).astype(np.int64)

    def add_plain(
        self, name: str, params: MBEParams, q: float, bias_value: Any, size: int, out_peak: float, shape=None
    ) -> None:
        """An MBE population without split: value ``f(q X)`` at scale ``2**-F``."""
        frac = self._frac(out_peak)
        self.pops.append(
            MBEPopulation(
                name,
                (size,) if shape is None else tuple(shape),
                bias=self._bias(bias_value, q, size),
                x_lo=int(math.ceil(params.lo / q)),
                x_hi=int(math.floor(params.hi / q)),
                **self._tables(params, q, frac),
            )
        )
        self.sigma[name], self.sizes[name] = 2.0**-frac, size

    def identity(self, name: str, prims: MBEPrimitives, q: float, bias_value: Any, size: int, shape=None) -> None:
        """An identity encoder of ``name``'s calibrated range."""
        lo, hi = self.ranges[name]
        self.add_plain(name, prims.identity.rescaled(lo, hi), q, bias_value, size, max(abs(lo), abs(hi)), shape)

    def dense_in(self, name: str, forms: list[tuple[str, np.ndarray]]) -> float:
        """Dense projections into ``name`` of value maps ``M`` (dst x src); returns the accumulator's unit ``q``."""
        top = (1 << (self.opts.weight_bits - 1)) - 1
        eff = [(src, m * self.sigma[src]) for src, m in forms]
        q = max(float(np.abs(e).max()) for _, e in eff) / top
        for src, e in eff:
            w = np.rint(e / q).astype(np.int64)
            if w.any():
                self.projs.append(DenseProjection(src, name, weight=w))
        return q

    def product_in(self, a: str, b: str, name: str, a_index, b_index, out_index, delay_a: int = 0) -> float:
        """A graded product into ``name`` (weight 1); returns the accumulator's unit ``sigma_a sigma_b``."""
        self.projs.append(
            ProductProjection(a, b, name, np.asarray(a_index), np.asarray(b_index), np.asarray(out_index), 1, delay_a)
        )
        return self.sigma[a] * self.sigma[b]


def _calibrate(ckpt: ViTCheckpoint, images: np.ndarray, margin: float) -> dict[str, tuple[float, float]]:
    """Calibrated ranges: widened by ``margin`` of the width, or by the factor ``1 + margin`` for
    the positive inputs of the ``inv`` and ``invsqrt`` splits (an additive margin could reach 0)."""
    vals = shadow_forward(ckpt, images)
    out = {}
    for k, v in vals.items():
        lo, hi = float(v.min()), float(v.max())
        if k.endswith((".r.in", ".rs.in")):
            out[k] = (lo / (1 + margin), hi * (1 + margin))
        else:
            out[k] = _round_out(lo, hi, margin)
    return out


def _h_maps(ckpt: ViTCheckpoint) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
    """The embedding's contribution to ``h`` (tokens x d, flattened): ``[("input", M)]`` and the bias."""
    cfg, P = ckpt.config, ckpt.params
    n, d = cfg.tokens, cfg.dim
    npix = int(np.prod(cfg.image_shape))
    pix = _patches(np.arange(npix, dtype=np.float64).reshape(1, *cfg.image_shape), cfg)[0].astype(np.int64)
    m = np.zeros((n, d, npix))
    for i in range(n):
        m[i][:, pix[i]] += P["embed.weight"] / cfg.input_max
    bias = (P["embed.bias"] + P["pos"]).reshape(-1)
    return [("input", m.reshape(n * d, npix))], bias


def _tokenwise(a: np.ndarray, forms: list[tuple[str, np.ndarray]], n: int) -> list[tuple[str, np.ndarray]]:
    """Apply ``a`` (out x d) to every token of the ``h`` maps (tokens*d x src) -> (tokens*out x src)."""
    d = a.shape[1]
    return [(src, np.einsum("od,nds->nos", a, m.reshape(n, d, -1)).reshape(-1, m.shape[1])) for src, m in forms]


def vit_to_mbe_graph(
    ckpt: ViTCheckpoint | None = None,
    opts: VitGraphOptions | None = None,
    data: Dataset | None = None,
    cache: PrimitiveCache | None = None,
    fit: bool = True,
) -> SNNGraph:
    """Convert a float ViT (default: the bundled ``tiny-digits-vit``) to an integer MBE graph.

    Parameters
    ----------
    ckpt : ViTCheckpoint, optional
    opts : VitGraphOptions, optional
    data : Dataset, optional
        Calibration images are ``data.x_train[:opts.calib_samples]`` (default: the bundled digits).
    cache : PrimitiveCache, optional
        Default: the shipped ViT cache, falling back to the shipped primitives.
    fit : bool
        Fit what the cache lacks (seeded, seconds each); ``False`` raises instead.

    Returns
    -------
    SNNGraph
        See the module docstring; ``metadata`` records the method, the options and every scale.
    """
    ckpt = load_vit() if ckpt is None else ckpt
    opts = VitGraphOptions() if opts is None else opts
    data = load_digits() if data is None else data
    cfg, P = ckpt.config, ckpt.params
    side = math.isqrt(cfg.tokens)
    if side * side != cfg.tokens:
        raise MBEError(
            f"the softmax's row maximum pools the {cfg.tokens} tokens as a square; {cfg.tokens} is not a square number."
        )
    if data.x_train.shape[1:] not in (cfg.image_shape, cfg.image_shape[1:]):
        raise MBEError(f"the ViT takes images shaped {cfg.image_shape}, the data has {data.x_train.shape[1:]}.")
    cache = PrimitiveCache(VIT_CACHE_PATH, also=(PRIMITIVES_PATH,)) if cache is None else cache
    T = opts.timesteps
    prims = MBEPrimitives.load(T, opts.n_bases, cache, fit, n_identity=opts.n_identity)
    ranges = _calibrate(ckpt, data.x_train[: opts.calib_samples], opts.margin)
    bld = _Builder(opts, ranges)
    n, d, nh, m_hid = cfg.tokens, cfg.dim, cfg.heads, cfg.mlp_hidden
    dh, sd = d // nh, math.sqrt(d)
    value_bits = max(1, int(math.ceil(math.log2(cfg.input_max + 1))))
    bld.pops.append(InputPopulation("input", tuple(cfg.image_shape), value_bits=value_bits))
    bld.sigma["input"], bld.sizes["input"] = 1.0 / T, int(np.prod(cfg.image_shape))
    h_forms, h_bias = _h_maps(ckpt)
    centre = np.eye(d) - 1.0 / d
    tok = np.arange(n)

    def layernorm(name: str, forms, bias, gamma, mats: dict[str, np.ndarray], pooled: bool) -> None:
        """``name.xc``, ``name.<mat>`` (identity encoders) and ``name.r`` (invsqrt) from the ``h`` maps."""
        tokens = 1 if pooled else n

        def mapped(a: np.ndarray):
            if pooled:  # mean over tokens first
                return [(s, a @ mm.reshape(n, d, -1).mean(axis=0)) for s, mm in forms], a @ bias.reshape(n, d).mean(0)
            return _tokenwise(a, forms, n), (bias.reshape(n, d) @ a.T).reshape(-1)

        for key, a in [("xc", centre)] + [(k, (w * gamma) @ centre) for k, w in mats.items()]:
            f, bvec = mapped(a)
            q = bld.dense_in(f"{name}.{key}", f)
            bld.identity(f"{name}.{key}", prims, q, bvec, tokens * a.shape[0])
        # r = 1 / sqrt(sum_c xc_c**2 + d eps): invsqrt split on X = sum xc**2 in units sigma_xc**2
        xc = f"{name}.xc"
        idx = (tok[:tokens, None] * d + np.arange(d)[None]).reshape(tokens, 1, d)
        q = bld.product_in(xc, xc, f"{name}.r", idx, idx.reshape(tokens, d, 1), np.arange(tokens).reshape(tokens, 1, 1))
        frac_xc = -round(math.log2(bld.sigma[xc]))
        lo, hi = ranges[f"{name}.r.in"]
        x_lo, x_hi = max(1, math.floor(lo / q)), math.ceil(hi / q)
        rmax = 1.0 / math.sqrt(max(lo, q))
        f_out = bld._frac(rmax)
        f_t = opts.payload_bits - 1
        b = opts.split_bits
        tables = bld._tables(prims.invsqrt, 2.0**-b, f_t)
        bld.pops.append(
            MBEPopulation(
                f"{name}.r",
                (tokens,),
                bias=bld._bias(d * cfg.ln_eps, q, tokens),
                x_lo=x_lo,
                x_hi=x_hi,
                split="invsqrt",
                split_bits=b,
                exp_bias=-2 * frac_xc,
                shift_base=f_out - f_t,
                **tables,
            )
        )
        bld.sigma[f"{name}.r"], bld.sizes[f"{name}.r"] = 2.0**-f_out, tokens

    def row_scaled(r: str, src: str, dst: str, cols: int, tokens: int):
        """Index arrays of ``dst[t, j] += r[t] * src[t, j]``, and the product's accumulator unit."""
        a_idx = (np.arange(tokens)[:, None] * cols + np.arange(cols)[None]).reshape(tokens, cols, 1)
        b_idx = np.arange(tokens).reshape(tokens, 1, 1)
        return bld.product_in(src, r, dst, a_idx, b_idx, a_idx.copy())

    for blk in range(cfg.blocks):
        p, name = f"blocks.{blk}", f"b{blk}"
        wq, wk, wv = (P[f"{p}.qkv.weight"][j * d : (j + 1) * d] for j in range(3))
        bq, bk, bv = (P[f"{p}.qkv.bias"][j * d : (j + 1) * d] for j in range(3))
        g1, be1 = P[f"{p}.ln1.weight"], P[f"{p}.ln1.bias"]
        layernorm(f"{name}.ln1", h_forms, h_bias, g1, {"pq": wq, "pk": wk, "pv": wv}, pooled=False)
        scale = LOG2E / math.sqrt(dh)
        for key, w, bb, c in (("q", wq, bq, scale), ("k", wk, bk, 1.0), ("v", wv, bv, 1.0)):
            dst = f"{name}.{key}"
            q = row_scaled(f"{name}.ln1.r", f"{name}.ln1.p{key}", dst, d, n) * sd * c
            bld.identity(dst, prims, q, np.tile((w @ be1 + bb) * c, n), n * d)
        # S = Q' K^T (identity encoder, rows as r x r windows), M = row max of S (max-pool of the
        # payload sums), E = 2**(S - M): exp2 split with X in units sigma_S = 2**-b
        s_name, m_name, e_name = f"{name}.s", f"{name}.m", f"{name}.e"
        a_idx = np.arange(nh)[:, None, None] * dh + np.arange(n)[None, :, None] * d + np.arange(dh)[None, None, :]
        b_idx = np.arange(nh)[:, None, None] * dh + np.arange(dh)[None, :, None] + np.arange(n)[None, None, :] * d
        out_idx = np.arange(nh)[:, None, None] * n * n + np.arange(n)[None, :, None] * n + np.arange(n)[None, None, :]
        q = bld.product_in(f"{name}.q", f"{name}.k", s_name, a_idx, b_idx, out_idx)
        bld.identity(s_name, prims, q, 0.0, nh * n * n, shape=(nh * n, side, side))
        bld.pops.append(MaxPoolPopulation(m_name, (nh * n, 1, 1)))
        bld.projs.append(PoolProjection(s_name, m_name, kernel=side, stride=side))
        bld.sigma[m_name], bld.sizes[m_name] = bld.sigma[s_name], nh * n
        b = -round(math.log2(bld.sigma[s_name]))
        f_t = opts.payload_bits - 1
        lo, _ = ranges[f"{e_name}.in"]
        bld.projs.append(IdentityProjection(s_name, e_name, weight=1, delay=1))
        bld.projs.append(
            DenseProjection(m_name, e_name, weight=-np.kron(np.eye(nh * n, dtype=np.int64), np.ones((n, 1), np.int64)))
        )
        bld.pops.append(
            MBEPopulation(
                e_name,
                (nh * n * n,),
                bias=np.zeros(nh * n * n, np.int64),
                x_lo=max(math.floor(lo * 2**b), -(opts.exp_floor << b)),
                x_hi=0,
                split="exp2",
                split_bits=b,
                **bld._tables(prims.exp2, 2.0**-b, f_t),
            )
        )
        bld.sigma[e_name], bld.sizes[e_name] = 2.0**-f_t, nh * n * n
        # R = 1 / sum_k E_k: dense of ones (X in units sigma_E exactly), inv split
        rs = f"{name}.rs"
        ones = np.kron(np.eye(nh * n, dtype=np.int64), np.ones((1, n), np.int64))
        bld.projs.append(DenseProjection(e_name, rs, weight=ones))
        q = bld.sigma[e_name]
        lo, hi = ranges[f"{rs}.in"]
        f_out = bld._frac(1.0 / max(lo, q))
        f_e = -round(math.log2(q))
        bld.pops.append(
            MBEPopulation(
                rs,
                (nh * n,),
                bias=np.zeros(nh * n, np.int64),
                x_lo=max(1, math.floor(lo / q)),
                x_hi=math.ceil(hi / q),
                split="inv",
                split_bits=opts.split_bits,
                shift_base=f_out + f_e - f_t,
                **bld._tables(prims.inv, 2.0**-opts.split_bits, f_t),
            )
        )
        bld.sigma[rs], bld.sizes[rs] = 2.0**-f_out, nh * n
        # EV[i, h, j] = sum_k E[h, i, k] V[k, h, j] (token-major, like O)
        ev = f"{name}.ev"
        a_idx = np.arange(nh)[:, None, None] * n * n + np.arange(n)[None, :, None] * n + np.arange(n)[None, None, :]
        b_idx = np.arange(nh)[:, None, None] * dh + np.arange(n)[None, :, None] * d + np.arange(dh)[None, None, :]
        out_idx = np.arange(nh)[:, None, None] * dh + np.arange(n)[None, :, None] * d + np.arange(dh)[None, None, :]
        q = bld.product_in(e_name, f"{name}.v", ev, a_idx, b_idx, out_idx)
        bld.identity(ev, prims, q, 0.0, n * d)
        # O[i, h, j] = EV[i, h, j] R[h, i]
        o = f"{name}.o"
        a_idx = out_idx.reshape(nh * n, dh, 1)
        b_idx = np.arange(nh * n).reshape(nh * n, 1, 1)
        q = bld.product_in(ev, rs, o, a_idx, b_idx, a_idx.copy())
        bld.identity(o, prims, q, 0.0, n * d)
        h_forms = h_forms + [(o, np.kron(np.eye(n), P[f"{p}.proj.weight"]))]
        h_bias = h_bias + np.tile(P[f"{p}.proj.bias"], n)
        # MLP
        g2, be2 = P[f"{p}.ln2.weight"], P[f"{p}.ln2.bias"]
        w1, b1 = P[f"{p}.fc1.weight"], P[f"{p}.fc1.bias"]
        layernorm(f"{name}.ln2", h_forms, h_bias, g2, {"pf": w1}, pooled=False)
        g = f"{name}.g"
        q = row_scaled(f"{name}.ln2.r", f"{name}.ln2.pf", g, m_hid, n) * sd
        lo, hi = ranges[f"{g}.in"]
        args = ("gelu", opts.n_gelu, T, lo, hi)
        fitp = cache.get_or_fit(*args) if fit else cache.get(*args)
        if fitp is None:
            raise MBEError(f"no cached GELU fit for {g} (T = {T}, range [{lo}, {hi}]); fit it first.")
        peak = float(np.abs(gelu(np.array([lo, hi, -0.75]))).max())
        bld.add_plain(g, fitp, q, np.tile(w1 @ be2 + b1, n), n * m_hid, peak)
        h_forms = h_forms + [(g, np.kron(np.eye(n), P[f"{p}.fc2.weight"]))]
        h_bias = h_bias + np.tile(P[f"{p}.fc2.bias"], n)
    gf, bf = P["ln_f.weight"], P["ln_f.bias"]
    wh = P["head.weight"]
    layernorm("final", h_forms, h_bias, gf, {"ph": wh}, pooled=True)
    # logits = sqrt(d) r_f P_H + W_head beta_f + b_head; P_H waits one stage for r_f
    classes = cfg.classes
    a_idx = np.arange(classes).reshape(1, classes, 1)
    q = bld.product_in("final.ph", "final.r", "logits", a_idx, np.zeros((1, 1, 1), np.int64), a_idx.copy(), T) * sd
    bld.pops.append(OutputPopulation("logits", (classes,), bias=bld._bias(wh @ bf + P["head.bias"], q, classes)))
    meta = {
        "method": "mbe",
        "model": "tiny-digits-vit",
        "logit_scale": q,
        "scales": bld.sigma,
        "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in ranges.items()},
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
    }
    return SNNGraph(tuple(bld.pops), tuple(bld.projs), T, opts.weight_bits, opts.v_bits, meta)


_OPERATOR_OF = {"xc": "layernorm", "r": "layernorm", "s": "softmax", "e": "softmax", "rs": "softmax", "g": "gelu"}


def operator_of(name: str) -> str:
    """The ViT operator a population of the graph belongs to (``b0.ln1.pq`` -> ``layernorm``)."""
    key = name.rsplit(".", 1)[-1]
    if key.startswith("p") and len(key) == 2:  # pq, pk, pv, pf, ph: LayerNorm's linear maps
        return "layernorm"
    return _OPERATOR_OF.get(key, "matmul")  # q, k, v, ev, o: the products' operands


def evaluate_vit_graph(
    opts: VitGraphOptions | None = None, samples: int | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Convert the bundled ViT to a graph and measure ANN and graph (functional executor) accuracy."""
    from .executor import run_snn

    opts = VitGraphOptions() if opts is None else opts
    data = load_digits() if data is None else data
    ckpt = load_vit()
    t0 = time.perf_counter()
    graph = vit_to_mbe_graph(ckpt, opts, data)
    x, y = data.x_test, data.y_test
    if samples is not None:
        x, y = x[:samples], y[:samples]
    ann = vit_forward(ckpt, x)
    run = run_snn(graph, x.reshape(len(x), *graph.input.shape).astype(np.int64), record=False)
    snn = run.logits * graph.metadata["logit_scale"]
    mbe = [p for p in graph.populations if p.kind == "mbe"]
    spikes = sum(int(run.counts[p.name].sum()) for p in mbe)
    fired: dict[str, list[int]] = {}
    for p in mbe:  # firing rate: basis spikes / (units x N x T)
        r = fired.setdefault(operator_of(p.name), [0, 0])
        r[0] += int(run.counts[p.name].sum())
        r[1] += len(x) * p.size * p.bases * opts.timesteps
    return {
        "timesteps": opts.timesteps,
        "samples": len(x),
        "steps": graph.total_steps,
        "units": sum(p.size for p in mbe),
        "accuracy": {
            "ann_float": float(np.mean(ann.argmax(1) == y)),
            "snn_graph": float(np.mean(snn.argmax(1) == y)),
        },
        "agreement": float(np.mean(ann.argmax(1) == snn.argmax(1))),
        "logit_error_rms": float(np.sqrt(np.mean((snn - ann) ** 2))),
        "spikes_per_inference": spikes / len(x),
        "firing_rate_per_operator": {k: v[0] / v[1] for k, v in sorted(fired.items())},
        "clipped_per_inference": {k: float(v.sum()) / len(x) for k, v in run.clipped.items() if v.sum()},
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the graph's accuracy at the given ``T`` (functional executor, the bundled digits)."""
    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.vit_graph", description=main.__doc__)
    ap.add_argument("--timesteps", type=int, nargs="*", default=[8, 12, 16])
    ap.add_argument("--samples", type=int, default=None)
    args = ap.parse_args(argv)
    for t in args.timesteps:
        print(json.dumps(evaluate_vit_graph(VitGraphOptions(timesteps=t), args.samples)))


if __name__ == "__main__":
    main()
