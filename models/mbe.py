"""Multi-basis Exponential Decay (MBE) neurons: float reference form and integer lookup-table form.

An MBE neuron approximates a scalar function ``f`` on a calibrated range ``[lo, hi]`` with
``N`` bases run for ``T`` steps. The input is injected once; per basis ``n`` and step ``t``::

    u_n[0]     = x - c_n
    Vth_n[t]   = a_n * g_vth_n**t        g_vth_n = exp(-dt_n / tau_vth_n)   (threshold)
    r_n[t]     = a_n * g_r_n**t          g_r_n   = exp(-dt_n / tau_r_n)     (reset)
    D_n[t]     = w_n * g_d_n**t          g_d_n   = exp(-dt_n / tau_d_n)     (intensity, weight folded in)
    s_n[t]     = H(u_n[t] - Vth_n[t])
    u_n[t + 1] = u_n[t] - s_n[t] * r_n[t]
    f(x)      ~= b + sum_n sum_t s_n[t] * D_n[t]

Only the ratios ``dt / tau`` matter, so they are stored as the per-step decay factors ``g``
(``g = 1/2`` is exactly representable, which keeps halving kernels exact in floating point).
The paper's neuron has five parameters per basis (``a, g_vth, g_r, g_d, w``) and ``u_n[0] = x``; we add a
per-basis input offset ``c_n`` (an initial-membrane bias, no multiplier) and an output bias
``b`` so that signed ranges such as GELU's work: the paper's form is the special case
``c_n = lo``, which :func:`spikeforge.models.mbe_fit.fit_primitive` keeps with ``free_offsets=False``.

With *halving kernels* (``a = (hi - lo) / 2``, every ``g = 1/2``, ``c = lo``) a basis is a
T-bit successive-approximation encoder: ``s[t]`` is binary digit ``t + 1`` of
``(x - lo) / (hi - lo)``.

Integer form (what the hardware runs, :class:`MBELut`): the input is the integer
``X = floor((x - lo) / q)`` with ``q = (hi - lo) / 2**in_bits``, and the per-(n, t) kernels are
lookup tables of integers, so every step is a compare, a conditional subtract and a
conditional add, no multiplication::

    U_n[0] = X - C_n;  s = U_n[t] >= VTH[n, t];  U_n[t + 1] = U_n[t] - s * R[n, t];
    Y = B + sum s * DI[n, t];   f(x) ~= Y / 2**out_frac_bits

Inputs outside ``[lo, hi]`` are clipped to it and *counted* (:class:`MBELog`); with no log a
:class:`MBERangeWarning` says how many values were clipped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import ConversionError

__all__ = [
    "MBEError",
    "MBELog",
    "MBELut",
    "MBEParams",
    "MBERangeWarning",
    "halving_params",
    "mbe_apply",
    "mbe_apply_int",
    "mbe_decode",
    "mbe_encode",
    "mbe_encode_int",
    "mbe_init_int",
    "mbe_membrane_range",
    "mbe_spikes",
    "mbe_step_int",
    "to_lut",
]


class MBEError(ConversionError):
    """MBE parameters, primitives or operator inputs are unusable."""


class MBERangeWarning(UserWarning):
    """Inputs outside an MBE neuron's calibrated range were clipped and no :class:`MBELog` was given."""


@dataclass
class MBELog:
    """Per-site counts of an MBE run: values clipped to the calibrated range, and spikes.

    Attributes
    ----------
    clipped, total : dict of str to int
        Per site name: values outside ``[lo, hi]``, and all values seen.
    spikes, slots : dict of str to int
        Per site name: spikes emitted, and neuron-basis-steps (``values x N x T``) that could spike.
    """

    clipped: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    spikes: dict[str, int] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)

    def record(self, site: str, n_clipped: int, n_total: int) -> None:
        """Add one call's clip counts to ``site``."""
        self.clipped[site] = self.clipped.get(site, 0) + int(n_clipped)
        self.total[site] = self.total.get(site, 0) + int(n_total)

    def record_spikes(self, site: str, n_spikes: int, n_slots: int) -> None:
        """Add one call's spike counts to ``site``."""
        self.spikes[site] = self.spikes.get(site, 0) + int(n_spikes)
        self.slots[site] = self.slots.get(site, 0) + int(n_slots)

    def report(self) -> dict[str, dict[str, float]]:
        """Per site: ``clipped``, ``total``, ``clipped_fraction``, ``spikes`` and ``firing_rate`` (spikes / slots)."""
        out = {}
        for k in sorted(set(self.total) | set(self.slots)):
            tot = self.total.get(k, 0)
            out[k] = {
                "clipped": self.clipped.get(k, 0),
                "total": tot,
                "clipped_fraction": self.clipped.get(k, 0) / max(tot, 1),
                "spikes": self.spikes.get(k, 0),
                "firing_rate": self.spikes.get(k, 0) / max(self.slots.get(k, 0), 1),
            }
        return out

    @property
    def n_clipped(self) -> int:
        """Clipped values over all sites."""
        return sum(self.clipped.values())


def _vec(name: str, v, n: int | None) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape != (n,):
        raise MBEError(f"MBE parameter {name} has {arr.size} values but the neuron has {n} bases.")
    if not np.all(np.isfinite(arr)):
        raise MBEError(f"MBE parameter {name} holds non-finite values.")
    return arr


@dataclass(frozen=True)
class MBEParams:
    """One fitted MBE neuron: ``N`` bases, ``T`` steps, calibrated range ``[lo, hi]``.

    Attributes
    ----------
    name : str
        The function it approximates (``"gelu"``, ``"exp2"``, ...), for reports.
    lo, hi : float
        Calibrated input range (``lo < hi``).
    timesteps : int
        ``T >= 1``.
    a, g_vth, g_r, g_d, w, offset : ndarray, shape (N,)
        Per-basis amplitude, per-step decay factors (> 0) of threshold, reset and intensity,
        output weight and input offset ``c_n`` (see the module docstring).
    bias : float
        Output bias ``b``.
    """

    name: str
    lo: float
    hi: float
    timesteps: int
    a: np.ndarray
    g_vth: np.ndarray
    g_r: np.ndarray
    g_d: np.ndarray
    w: np.ndarray
    offset: np.ndarray
    bias: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise MBEError(f"MBE neuron {self.name!r} needs a finite range lo < hi, got [{self.lo}, {self.hi}].")
        if int(self.timesteps) != self.timesteps or self.timesteps < 1:
            raise MBEError(f"MBE neuron {self.name!r} needs timesteps >= 1, got {self.timesteps}.")
        a = _vec("a", self.a, None)
        if a.size == 0:
            raise MBEError(f"MBE neuron {self.name!r} needs at least one basis.")
        n = a.size
        object.__setattr__(self, "a", a)
        for key in ("g_vth", "g_r", "g_d", "w", "offset"):
            object.__setattr__(self, key, _vec(key, getattr(self, key), n))
        if min(self.g_vth.min(), self.g_r.min(), self.g_d.min()) <= 0:
            raise MBEError(f"MBE neuron {self.name!r} needs decay factors g > 0 (g = exp(-dt / tau)).")
        object.__setattr__(self, "timesteps", int(self.timesteps))
        object.__setattr__(self, "bias", float(self.bias))

    @property
    def n_bases(self) -> int:
        """Number of bases ``N``."""
        return int(self.a.size)

    def kernels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-(n, t) threshold, reset and intensity tables, each shaped ``(N, T)``."""
        t = np.arange(self.timesteps, dtype=np.float64)[None]
        vth = self.a[:, None] * self.g_vth[:, None] ** t
        reset = self.a[:, None] * self.g_r[:, None] ** t
        inten = self.w[:, None] * self.g_d[:, None] ** t
        return vth, reset, inten

    def rescaled(self, lo: float, hi: float) -> MBEParams:
        """The same neuron for the affine image ``x -> lo + (hi - lo) * (x - self.lo) / (self.hi - self.lo)``.

        Membrane, thresholds and resets all scale by ``s = (hi - lo) / (self.hi - self.lo)``, so
        the spikes are unchanged; valid for the identity primitive (``f(lo + s u) = lo + s f(u)``),
        which is how one fitted identity serves every product operand's range.
        """
        s = (hi - lo) / (self.hi - self.lo)
        return MBEParams(
            name=self.name,
            lo=lo,
            hi=hi,
            timesteps=self.timesteps,
            a=self.a * s,
            g_vth=self.g_vth,
            g_r=self.g_r,
            g_d=self.g_d,
            w=self.w * s,
            offset=lo + (self.offset - self.lo) * s,
            bias=lo + (self.bias - self.lo) * s,
        )

    def to_dict(self) -> dict:
        """JSON-ready form (floats round-trip exactly through ``json``)."""
        return {
            "name": self.name,
            "lo": self.lo,
            "hi": self.hi,
            "timesteps": self.timesteps,
            "bias": self.bias,
            **{k: getattr(self, k).tolist() for k in ("a", "g_vth", "g_r", "g_d", "w", "offset")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> MBEParams:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                name=str(d["name"]),
                lo=float(d["lo"]),
                hi=float(d["hi"]),
                timesteps=int(d["timesteps"]),
                bias=float(d["bias"]),
                **{k: d[k] for k in ("a", "g_vth", "g_r", "g_d", "w", "offset")},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MBEError(f"MBE parameter record is incomplete or malformed ({exc}).") from None


def halving_params(lo: float = 0.0, hi: float = 1.0, timesteps: int = 16) -> MBEParams:
    """One basis of halving kernels: a ``T``-bit successive-approximation encoder of ``[lo, hi]``.

    ``Vth[t] = r[t] = D[t] = (hi - lo) 2**-(t + 1)``, ``c = lo``, ``b = lo``: the output is ``x``
    truncated to ``T`` binary digits of the range.
    """
    half = (hi - lo) / 2
    return MBEParams(
        name="identity",
        lo=lo,
        hi=hi,
        timesteps=timesteps,
        a=[half],
        g_vth=[0.5],
        g_r=[0.5],
        g_d=[0.5],
        w=[half],
        offset=[lo],
        bias=lo,
    )


def _clip(x: np.ndarray, lo: float, hi: float, site: str, log: MBELog | None) -> np.ndarray:
    """Clip to ``[lo, hi]`` and count; warn when there is no log to count into."""
    out = (x < lo) | (x > hi)
    n = int(np.count_nonzero(out))
    if log is not None:
        log.record(site, n, x.size)
    elif n:
        warnings.warn(
            f"{n} of {x.size} inputs to MBE site {site!r} were outside its calibrated range [{lo:g}, {hi:g}] "
            "and were clipped.",
            MBERangeWarning,
            stacklevel=3,
        )
    return np.clip(x, lo, hi)


def mbe_encode(x: np.ndarray, params: MBEParams, log: MBELog | None = None, site: str | None = None) -> np.ndarray:
    """Run the float MBE neuron on every element of ``x``; return its binary spikes.

    Parameters
    ----------
    x : array_like, any shape
        Inputs; values outside ``[lo, hi]`` are clipped and counted into ``log``.
    params : MBEParams
    log : MBELog, optional
    site : str, optional
        Name the clip counts are filed under (default: ``params.name``).

    Returns
    -------
    ndarray of bool, shape ``x.shape + (N, T)``
        ``s_n[t]``.
    """
    site = site or params.name
    x = _clip(np.asarray(x, dtype=np.float64), params.lo, params.hi, site, log)
    vth, reset, _ = params.kernels()
    u = x[..., None] - params.offset  # (..., N)
    spikes = np.empty(u.shape + (params.timesteps,), dtype=bool)
    for t in range(params.timesteps):
        s = u >= vth[:, t]
        spikes[..., t] = s
        u = u - s * reset[:, t]
    if log is not None:
        log.record_spikes(site, int(np.count_nonzero(spikes)), spikes.size)
    return spikes


def mbe_decode(spikes: np.ndarray, params: MBEParams) -> np.ndarray:
    """Output ``b + sum_{n,t} s_n[t] D_n[t]`` of spikes shaped ``(..., N, T)``."""
    _, _, inten = params.kernels()
    return params.bias + np.einsum("...nt,nt->...", spikes.astype(np.float64), inten)


def mbe_apply(x: np.ndarray, params: MBEParams, log: MBELog | None = None, site: str | None = None) -> np.ndarray:
    """``f(x)`` through the float MBE neuron (encode, then decode); same shape as ``x``."""
    return mbe_decode(mbe_encode(x, params, log, site), params)


@dataclass(frozen=True)
class MBELut:
    """Integer form of an MBE neuron: per-(n, t) lookup tables, fixed-point input and output.

    Attributes
    ----------
    vth, reset, intensity : ndarray of int64, shape (N, T)
        ``VTH = round(Vth / q)``, ``R = round(r / q)``, ``DI = round(D * 2**out_frac_bits)``.
    offset : ndarray of int64, shape (N,)
        ``C = round((c - lo) / q)``.
    bias : int
        ``B = round(b * 2**out_frac_bits)``.
    lo, hi : float
        Calibrated range; ``q = (hi - lo) / 2**in_bits``.
    in_bits, out_frac_bits : int
    """

    vth: np.ndarray
    reset: np.ndarray
    intensity: np.ndarray
    offset: np.ndarray
    bias: int
    lo: float
    hi: float
    in_bits: int
    out_frac_bits: int

    @property
    def quantum(self) -> float:
        """Input LSB ``q``."""
        return (self.hi - self.lo) / 2**self.in_bits

    def quantize_input(self, x: np.ndarray, log: MBELog | None = None, site: str = "mbe") -> np.ndarray:
        """``X = floor((clip(x) - lo) / q)``, clipped to ``0 .. 2**in_bits`` and counted."""
        x = _clip(np.asarray(x, dtype=np.float64), self.lo, self.hi, site, log)
        return np.floor((x - self.lo) / self.quantum).astype(np.int64)


def to_lut(params: MBEParams, in_bits: int | None = None, out_frac_bits: int = 16) -> MBELut:
    """Round an MBE neuron's kernels to integer lookup tables.

    Parameters
    ----------
    params : MBEParams
    in_bits : int, optional
        Input resolution: ``q = (hi - lo) / 2**in_bits`` (default ``T + 4``: four guard bits
        below the finest halving threshold).
    out_frac_bits : int
        Fractional bits of the output accumulator.
    """
    in_bits = params.timesteps + 4 if in_bits is None else int(in_bits)
    if not 1 <= in_bits <= 48 or not 0 <= out_frac_bits <= 40:
        raise MBEError(
            f"MBE integer form needs 1 <= in_bits <= 48 and 0 <= out_frac_bits <= 40, got {in_bits}, {out_frac_bits}."
        )
    q = (params.hi - params.lo) / 2**in_bits
    vth, reset, inten = params.kernels()
    scale = 2.0**out_frac_bits
    return MBELut(
        vth=np.rint(vth / q).astype(np.int64),
        reset=np.rint(reset / q).astype(np.int64),
        intensity=np.rint(inten * scale).astype(np.int64),
        offset=np.rint((params.offset - params.lo) / q).astype(np.int64),
        bias=int(np.rint(params.bias * scale)),
        lo=params.lo,
        hi=params.hi,
        in_bits=in_bits,
        out_frac_bits=int(out_frac_bits),
    )


def mbe_init_int(xq: np.ndarray, lut: MBELut) -> np.ndarray:
    """Membranes at injection, ``U_n[0] = X - C_n``, shaped ``X.shape + (N,)`` (int64)."""
    xq = np.asarray(xq)
    if xq.dtype.kind not in "iu":
        raise MBEError(f"the integer MBE neuron takes integer inputs, found {xq.dtype}.")
    return xq.astype(np.int64)[..., None] - lut.offset


def mbe_step_int(u: np.ndarray, t: int, lut: MBELut) -> np.ndarray:
    """One time step ``t`` of the integer neuron: fire where ``U >= VTH[:, t]``, subtract ``R[:, t]`` there.

    This is the per-step kernel a time-stepped executor or simulator runs: two table reads per
    basis, a compare and a conditional subtract. ``u`` (from :func:`mbe_init_int`) is updated in
    place; the spikes are returned (bool, same shape as ``u``). Their output weight is
    ``DI[:, t]``.
    """
    if not 0 <= t < lut.vth.shape[1]:
        raise MBEError(f"step {t} is outside the neuron's 0..{lut.vth.shape[1] - 1} steps.")
    s = u >= lut.vth[:, t]
    u -= np.where(s, lut.reset[:, t], 0)
    return s


def mbe_encode_int(xq: np.ndarray, lut: MBELut) -> np.ndarray:
    """Integer MBE neuron on integer inputs ``X`` (any shape); spikes shaped ``X.shape + (N, T)``.

    Only compares, conditional subtractions of table entries and no multiplication.
    """
    u = mbe_init_int(xq, lut)
    n_steps = lut.vth.shape[1]
    spikes = np.empty(u.shape + (n_steps,), dtype=bool)
    for t in range(n_steps):
        spikes[..., t] = mbe_step_int(u, t, lut)
    return spikes


def mbe_membrane_range(xq: np.ndarray, lut: MBELut) -> tuple[int, int]:
    """Smallest and largest membrane value ``U_n[t]`` the integer neuron reaches on inputs ``X``.

    Sizes the membrane register: a signed register of ``b`` bits holds ``[-2**(b-1), 2**(b-1) - 1]``.
    """
    u = mbe_init_int(xq, lut)
    lo, hi = int(u.min()), int(u.max())
    for t in range(lut.vth.shape[1]):
        mbe_step_int(u, t, lut)
        lo, hi = min(lo, int(u.min())), max(hi, int(u.max()))
    return lo, hi


def mbe_apply_int(
    x: np.ndarray, lut: MBELut, log: MBELog | None = None, site: str = "mbe"
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``x``, run the integer neuron and accumulate the intensity table.

    Returns
    -------
    acc : ndarray of int64
        ``Y = B + sum s * DI`` (integer accumulator).
    y : ndarray of float64
        ``Y / 2**out_frac_bits``.
    """
    spikes = mbe_encode_int(lut.quantize_input(x, log, site), lut)
    acc = lut.bias + np.where(spikes, lut.intensity, 0).sum(axis=(-2, -1))
    return acc, acc / 2.0**lut.out_frac_bits


def mbe_spikes(
    x: np.ndarray, params: MBEParams, log: MBELog | None = None, site: str | None = None, integer: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """Spikes of the float neuron, or of its integer LUT form (``integer=True``, default widths).

    Returns
    -------
    spikes : ndarray of bool, shape ``x.shape + (N, T)``
    intensity : ndarray, shape (N, T)
        ``D`` (float form) or ``DI / 2**out_frac_bits`` (integer form: exact dyadic values).
    bias : float
        ``b`` or ``B / 2**out_frac_bits``. The output is ``bias + sum spikes * intensity``.
    """
    if not integer:
        return mbe_encode(x, params, log, site), params.kernels()[2], params.bias
    site = site or params.name
    lut = to_lut(params)
    spikes = mbe_encode_int(lut.quantize_input(x, log, site), lut)
    if log is not None:
        log.record_spikes(site, int(np.count_nonzero(spikes)), spikes.size)
    scale = 2.0**lut.out_frac_bits
    return spikes, lut.intensity / scale, lut.bias / scale
