"""Transformer operators built from MBE primitives (functional model; float or integer LUT neurons).

- GELU: one MBE neuron fitted to GELU on the calibrated range.
- Activation x activation product: both operands are encoded by an identity MBE neuron
  (rescaled to each operand's calibrated range ``[lo_i, hi_i]``), ``x_i ~= b_i + sum_k s_ik D_ik``
  with ``k = (n, t)``, so::

      x1 * x2 ~= b1 b2 + b1 sum_l s2_l D2_l + b2 sum_k s1_k D1_k + sum_kl (s1_k AND s2_l) (D1_k D2_l)

  The last term is the outer product of the binary spike vectors weighted by the outer product
  of the fixed intensities (a ``K x K`` table): additions only. A matrix product sums it over
  the shared index, which equals the product of the decoded operands (what
  :func:`spike_matmul` computes; the test suite checks the two agree).
- Softmax: ``z = (x - max x) log2 e``, ``e = 2**floor(z) * MBE_exp2(z - floor z)`` (the integer
  part is a shift), ``S = sum e = m 2**E`` with ``m`` in ``[0.5, 1)``,
  ``1 / S = MBE_inv(m) 2**-E``, ``p = e x (1 / S)`` by the spike product.
- LayerNorm: ``xc = x - mean x`` (encoded once, used by both products), ``var = mean(xc x xc)``
  by the spike product,
  ``var + eps = m 2**E`` with ``E`` made even (parity fix: ``m`` in ``[0.5, 2)``),
  ``1 / sqrt(var + eps) = MBE_invsqrt(m) 2**(-E/2)``, ``y = (xc x rstd) gamma + beta``.
- Weight x activation layers stay linear (spikes x weights are accumulations).

Operators take the calibrated operand ranges explicitly; values outside them are clipped and
counted in the :class:`~spikeforge.models.mbe.MBELog` (never silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .mbe import MBEError, MBELog, MBEParams, mbe_spikes
from .mbe_fit import PrimitiveCache

__all__ = [
    "MBE_OPERATORS",
    "MBEPrimitives",
    "check_operator",
    "encode_operand",
    "encoded_product",
    "spike_matmul",
    "spike_product",
    "spiking_gelu",
    "spiking_layernorm",
    "spiking_softmax",
]

#: Operators the MBE conversion replaces (or keeps, for the linear ones), by name.
MBE_OPERATORS = {
    "linear": "unchanged: spikes x weights are accumulations",
    "add": "unchanged: residual adds are linear",
    "gelu": "MBE_gelu (N = 4)",
    "matmul": "identity-MBE encodings of both operands, outer product of intensities and spikes",
    "mul": "identity-MBE encodings of both operands, outer product of intensities and spikes",
    "softmax": "exponent split + MBE_exp2, MBE_inv reciprocal, spike product",
    "layernorm": "spike-product variance, MBE_invsqrt with parity fix, spike product",
}


def check_operator(op: str) -> str:
    """Return the MBE replacement of operator ``op``, or raise naming it."""
    if op not in MBE_OPERATORS:
        raise MBEError(
            f"operator {op!r} has no MBE replacement; supported operators: {', '.join(sorted(MBE_OPERATORS))}."
        )
    return MBE_OPERATORS[op]


_FIXED_RANGES = {"exp2": (0.0, 1.0), "inv": (0.5, 1.0), "invsqrt": (0.5, 2.0), "identity": (0.0, 1.0)}


@dataclass(frozen=True)
class MBEPrimitives:
    """The fixed-range primitives an MBE network needs at one ``T``.

    Attributes
    ----------
    exp2 : MBEParams
        ``2**x`` on ``[0, 1]``.
    inv : MBEParams
        ``1 / x`` on ``[0.5, 1]``.
    invsqrt : MBEParams
        ``1 / sqrt(x)`` on ``[0.5, 2]``.
    identity : MBEParams
        ``x`` on ``[0, 1]``; rescaled to each product operand's range.
    integer : bool
        Run every neuron in its integer LUT form (:func:`~spikeforge.models.mbe.to_lut`, default
        widths) instead of the float form.
    """

    exp2: MBEParams
    inv: MBEParams
    invsqrt: MBEParams
    identity: MBEParams
    integer: bool = False

    def __post_init__(self) -> None:
        steps = {p.timesteps for p in (self.exp2, self.inv, self.invsqrt, self.identity)}
        if len(steps) != 1:
            raise MBEError(f"MBE primitives must share one T, found {sorted(steps)}.")
        for key, want in _FIXED_RANGES.items():
            p = getattr(self, key)
            if (p.lo, p.hi) != want:
                raise MBEError(f"MBE primitive {p.name!r} must be fitted on {list(want)}, found [{p.lo}, {p.hi}].")

    @property
    def timesteps(self) -> int:
        """``T`` shared by all primitives."""
        return self.identity.timesteps

    @classmethod
    def load(
        cls,
        timesteps: int = 16,
        n_bases: int = 8,
        cache: PrimitiveCache | None = None,
        fit: bool = True,
        integer: bool = False,
        n_identity: int | None = None,
    ) -> MBEPrimitives:
        """Load the primitives from ``cache`` (default: shipped), fitting missing ones when ``fit``.

        ``n_bases`` applies to every primitive, except the identity when ``n_identity`` is given
        (``N = 1`` is already the optimal identity, a halving encoder; see docs/mbe.md).
        """
        cache = PrimitiveCache() if cache is None else cache
        out = {}
        for name, (lo, hi) in _FIXED_RANGES.items():
            n = n_identity if (name == "identity" and n_identity is not None) else n_bases
            args = (name, n, timesteps, lo, hi)
            p = cache.get_or_fit(*args) if fit else cache.get(*args)
            if p is None:
                raise MBEError(f"no cached MBE primitive {name} with N = {n}, T = {timesteps}; fit it first.")
            out[name] = p
        return cls(**out, integer=integer)


def _apply(x: np.ndarray, params: MBEParams, log: MBELog | None, site: str, integer: bool) -> np.ndarray:
    spikes, inten, bias = mbe_spikes(x, params, log, site, integer)
    return bias + np.einsum("...nt,nt->...", spikes.astype(np.float64), inten)


def spiking_gelu(
    x: np.ndarray, params: MBEParams, log: MBELog | None = None, site: str = "gelu", integer: bool = False
) -> np.ndarray:
    """GELU through one MBE neuron fitted on ``[params.lo, params.hi]`` (``integer``: its LUT form)."""
    return _apply(x, params, log, site, integer)


def _check_range(rng: tuple[float, float], what: str) -> tuple[float, float]:
    lo, hi = float(rng[0]), float(rng[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise MBEError(f"the calibrated range of {what} must be finite with lo < hi, got [{lo}, {hi}].")
    return lo, hi


def encode_operand(
    x: np.ndarray,
    identity: MBEParams,
    rng: tuple[float, float],
    log: MBELog | None = None,
    site: str = "operand",
    integer: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Encode ``x`` with the identity neuron rescaled to ``rng`` (``integer``: its LUT form).

    Returns
    -------
    spikes : ndarray of bool, shape ``x.shape + (K,)``, ``K = N T``
    intensity : ndarray, shape (K,)
        ``D_k``.
    bias : float
        ``b``; the decoded value is ``b + sum_k s_k D_k``.
    """
    lo, hi = _check_range(rng, site)
    spikes, inten, bias = mbe_spikes(x, identity.rescaled(lo, hi), log, site, integer)
    return spikes.reshape(spikes.shape[:-2] + (-1,)), inten.reshape(-1), bias


def spike_product(
    x1: np.ndarray,
    x2: np.ndarray,
    identity: MBEParams,
    range1: tuple[float, float],
    range2: tuple[float, float],
    log: MBELog | None = None,
    site: str = "mul",
    explicit: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Elementwise ``x1 * x2`` (broadcast) from binary spikes and the outer product of intensities.

    Implements ``b1 b2 + b1 sum_l s2_l D2_l + b2 sum_k s1_k D1_k + sum_kl s1_k s2_l D1_k D2_l``.
    Passing the same array and range twice encodes it once (a square: ``K x K`` pairs of one train).
    The intensity table ``D1_k D2_l`` has rank one, so the pair sum equals
    ``(sum_k s1_k D1_k)(sum_l s2_l D2_l)``; ``explicit=True`` evaluates the ``K x K`` AND-and-add
    form the hardware runs instead (same value up to rounding, ``K**2`` times the work).
    ``integer`` encodes with the integer LUT form of the identity neuron.
    """
    enc1 = encode_operand(x1, identity, range1, log, site + ".a", integer)
    if x2 is x1 and tuple(range2) == tuple(range1):
        enc2 = enc1
    else:
        enc2 = encode_operand(x2, identity, range2, log, site + ".b", integer)
    return encoded_product(enc1, enc2, explicit)


def encoded_product(
    enc1: tuple[np.ndarray, np.ndarray, float], enc2: tuple[np.ndarray, np.ndarray, float], explicit: bool = False
) -> np.ndarray:
    """The product formula of :func:`spike_product` on operands already encoded by :func:`encode_operand`.

    Lets one encoding serve several products (LayerNorm's centred input feeds the square and the
    final scaling), as its spike train would on hardware.
    """
    (s1, d1, b1), (s2, d2, b2) = enc1, enc2
    s1, s2 = np.broadcast_arrays(s1.astype(np.float64), s2.astype(np.float64))
    v1, v2 = s1 @ d1, s2 @ d2
    pairs = np.einsum("...k,kl,...l->...", s1, np.outer(d1, d2), s2) if explicit else v1 * v2
    return b1 * b2 + b1 * v2 + b2 * v1 + pairs


def spike_matmul(
    a: np.ndarray,
    b: np.ndarray,
    identity: MBEParams,
    range_a: tuple[float, float],
    range_b: tuple[float, float],
    log: MBELog | None = None,
    site: str = "matmul",
    integer: bool = False,
) -> np.ndarray:
    """``a @ b`` (batched, numpy broadcasting) with both operands MBE-encoded.

    Summing the pair terms of :func:`spike_product` over the shared index factorises into the
    product of the decoded operands, ``(b_a + S_a D_a) @ (b_b + S_b D_b)``: that is what is
    computed, in ``O(K)`` per element instead of ``O(K**2)``.
    """
    sa, da, ba = encode_operand(a, identity, range_a, log, site + ".a", integer)
    sb, db, bb = encode_operand(b, identity, range_b, log, site + ".b", integer)
    return (ba + sa.astype(np.float64) @ da) @ (bb + sb.astype(np.float64) @ db)


def spiking_softmax(
    x: np.ndarray,
    prims: MBEPrimitives,
    axis: int = -1,
    log: MBELog | None = None,
    site: str = "softmax",
) -> np.ndarray:
    """Softmax along ``axis`` from MBE_exp2, MBE_inv and one spike product (module docstring).

    The exponent's fraction lies in ``[0, 1)`` and the sum's mantissa in ``[0.5, 1)`` by
    construction, so only the final product's operands have calibrated ranges, fixed here:
    ``e`` in ``[0, 2]``, ``1 / S`` in ``[0, 2]``.
    """
    x = np.asarray(x, dtype=np.float64)
    z = (x - x.max(axis=axis, keepdims=True)) * math.log2(math.e)
    k = np.floor(z)
    e = np.ldexp(_apply(z - k, prims.exp2, log, site + ".exp2", prims.integer), k.astype(np.int64))
    mant, ex = np.frexp(e.sum(axis=axis, keepdims=True))
    inv = np.ldexp(_apply(mant, prims.inv, log, site + ".inv", prims.integer), -ex)
    return spike_product(e, inv, prims.identity, (0.0, 2.0), (0.0, 2.0), log, site + ".mul", integer=prims.integer)


def spiking_layernorm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    prims: MBEPrimitives,
    xc_range: tuple[float, float],
    rstd_range: tuple[float, float],
    eps: float = 1e-5,
    log: MBELog | None = None,
    site: str = "layernorm",
) -> np.ndarray:
    """LayerNorm over the last axis from spike products and MBE_invsqrt (module docstring).

    Parameters
    ----------
    x : ndarray, shape (..., d)
    gamma, beta : ndarray, shape (d,)
    prims : MBEPrimitives
    xc_range : (float, float)
        Calibrated range of the centred input ``x - mean x``.
    rstd_range : (float, float)
        Calibrated range of ``1 / sqrt(var + eps)``.
    eps : float
    log : MBELog, optional
    site : str
    """
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=-1, keepdims=True)
    enc_xc = encode_operand(xc, prims.identity, xc_range, log, site + ".xc", prims.integer)
    var = encoded_product(enc_xc, enc_xc).mean(axis=-1, keepdims=True)
    mant, ex = np.frexp(np.maximum(var, 0.0) + eps)
    odd = (ex % 2) != 0
    mant = np.where(odd, 2.0 * mant, mant)  # parity fix: E even, m in [0.5, 2)
    ex = np.where(odd, ex - 1, ex)
    rstd = np.ldexp(_apply(mant, prims.invsqrt, log, site + ".invsqrt", prims.integer), -(ex // 2))
    enc_r = encode_operand(rstd, prims.identity, rstd_range, log, site + ".rstd", prims.integer)
    return encoded_product(enc_xc, enc_r) * gamma + beta
