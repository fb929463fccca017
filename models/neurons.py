"""Neuron and unit equations of the SNN graph, in integers (numpy, batched).

IF / DIF (integrate-and-fire, reset by subtraction, firing delay ``d``)::

    v[t]  = v[t-1] + I[t] + b * [in_start <= t < in_start + T]
    s[t]  = [out_start <= t < out_start + T] * [v[t] >= theta]
    v[t] -= theta * s[t]

with ``v[-1] = v0`` and ``out_start = in_start + d``. For ``d >= T - 1`` every input has
arrived before the first firing decision, so the spike count is exactly
``clip(floor((v0 + sum_t I[t] + T b) / theta), 0, T)``: the quantized activation.

Max-pool unit (temporal decomposition): with running input counts ``C[t]``,
``o[t] = max_window C[t] - max_window C[t-1]``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "bit_length",
    "if_fire",
    "maxpool_step",
    "mbe_fire",
    "mbe_split",
    "mbe_start",
    "quantized_code",
    "shift_floor",
]


def if_fire(v: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Fire where ``v >= theta`` and subtract ``theta`` there (in place); return the spikes.

    Parameters
    ----------
    v : ndarray of int64, shape (batch, n)
        Membrane potentials, updated in place.
    theta : ndarray of int64, shape (n,)
        Thresholds (>= 1).

    Returns
    -------
    ndarray of int8, shape (batch, n)
    """
    spikes = v >= theta
    v -= np.where(spikes, theta, 0)
    return spikes.astype(np.int8)


def quantized_code(z: np.ndarray, theta: np.ndarray, timesteps: int) -> np.ndarray:
    """Integer activation code ``clip(floor(z / theta), 0, T)`` (``z`` includes ``v0``)."""
    return np.clip(np.floor_divide(z, theta), 0, timesteps).astype(np.int64)


def maxpool_step(counts: np.ndarray, windows: np.ndarray, prev_max: np.ndarray) -> np.ndarray:
    """One step of the max-pool unit.

    Parameters
    ----------
    counts : ndarray of int64, shape (batch, n_src)
        Running input spike counts ``C[t]`` (already including this step's spikes).
    windows : ndarray of int64, shape (n_dst, k*k)
        Source indices of each window.
    prev_max : ndarray of int64, shape (batch, n_dst)
        ``max_window C[t-1]``; updated in place to ``max_window C[t]``.

    Returns
    -------
    ndarray of int64, shape (batch, n_dst)
        ``o[t]``, binary when the inputs are binary spike trains (graded for running sums of
        payloads).
    """
    cur = counts[:, windows].max(axis=2)
    out = cur - prev_max
    prev_max[...] = cur
    return out


def bit_length(x: np.ndarray) -> np.ndarray:
    """``floor(log2 x) + 1`` of positive int64 values (0 for 0), exactly (no floating point)."""
    x = np.asarray(x, dtype=np.int64)
    n = np.zeros(x.shape, np.int64)
    y = x.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = y >= (1 << step)
        n += np.where(big, step, 0)
        y = np.where(big, y >> step, y)
    return n + (y > 0)


def shift_floor(x: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """``floor(x * 2**sh)`` for int64 ``x`` and integer shifts (left for ``sh >= 0``)."""
    x = np.asarray(x, dtype=np.int64)
    sh = np.asarray(sh, dtype=np.int64)
    return np.where(sh >= 0, x << np.maximum(sh, 0), x >> np.minimum(-sh, 63))


def mbe_split(x: np.ndarray, split: str, bits: int, exp_bias: int, shift_base: int) -> tuple[np.ndarray, np.ndarray]:
    """The exponent split in front of an MBE unit's bases: basis input ``u`` and output shift ``sh``.

    With ``b = bits`` and ``X`` already clamped (``L`` = bit length of ``X``)::

        none     u = X                                               sh = base
        exp2     e = floor(X / 2**b),  u = X - e 2**b  (in [0, 2**b))     sh = base + e
        inv      u = floor(X 2**(b - L))  (in [2**(b-1), 2**b))          sh = base - L
        invsqrt  E = L + exp_bias;  p = E mod 2;  u = floor(X 2**(b + p - L))  (in [2**(b-1), 2**(b+1)))
                                                                     sh = base - (E - p) / 2

    For ``exp2`` with ``X`` in units of ``2**-b``, ``2**(X 2**-b) = 2**(u 2**-b) 2**e``: the bases
    see the fraction and the shifter applies the integer part. For ``inv``, ``X = m 2**L`` with
    ``m = u 2**-b`` in ``[0.5, 1)``, so ``1/X = (1/m) 2**-L``. For ``invsqrt`` the parity fix makes
    the exponent even, ``m`` in ``[0.5, 2)`` and ``1/sqrt(X) = (1/sqrt(m)) 2**(-(E - p)/2)`` (with
    ``exp_bias`` putting ``X``'s binary point where the parity is taken).

    Parameters
    ----------
    x : ndarray of int64
        Clamped input accumulators (``>= 1`` for ``inv`` and ``invsqrt``).
    split : str
    bits, exp_bias, shift_base : int

    Returns
    -------
    u, sh : ndarray of int64, shaped like ``x``
    """
    x = np.asarray(x, dtype=np.int64)
    if split == "none":
        return x, np.full(x.shape, shift_base, np.int64)
    if split == "exp2":
        e = x >> bits
        return x - (e << bits), shift_base + e
    length = bit_length(x)
    if split == "inv":
        return shift_floor(x, bits - length), shift_base - length
    if split == "invsqrt":
        e = length + exp_bias
        parity = e & 1
        return shift_floor(x, bits + parity - length), shift_base - (e - parity) // 2
    raise ValueError(f"unknown MBE split {split!r}")


def mbe_start(
    x: np.ndarray,
    offset: np.ndarray,
    x_lo: int,
    x_hi: int,
    split: str = "none",
    bits: int = 0,
    exp_bias: int = 0,
    shift_base: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clamp the input accumulators and start the basis membranes of an integer MBE unit.

    ``U_n = u - C_n`` with ``(u, sh) = mbe_split(clip(X, x_lo, x_hi), ...)``.

    Parameters
    ----------
    x : ndarray of int64, shape (batch, n)
        Input accumulators ``X``.
    offset : ndarray of int64, shape (N,)
        Basis offsets ``C_n``.
    x_lo, x_hi : int
        Calibrated input range.
    split, bits, exp_bias, shift_base
        The exponent split (:func:`mbe_split`).

    Returns
    -------
    u : ndarray of int64, shape (batch, n, N)
    clipped : ndarray of bool, shape (batch, n)
        Units whose ``X`` was outside ``[x_lo, x_hi]``.
    shift : ndarray of int64, shape (batch, n)
        Output shift ``sh`` of every unit.
    """
    clipped = (x < x_lo) | (x > x_hi)
    u, sh = mbe_split(np.clip(x, x_lo, x_hi), split, bits, exp_bias, shift_base)
    return u[..., None] - offset, clipped, sh


def mbe_fire(
    u: np.ndarray,
    vth: np.ndarray,
    reset: np.ndarray,
    intensity: np.ndarray,
    out_bias: int = 0,
    shift: np.ndarray | int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One output step ``k`` of integer MBE units.

    ``s = U >= VTH[:, k]``, ``U -= s R[:, k]``, ``P = floor((B + sum_n s DI[:, k]) * 2**sh)``.

    Parameters
    ----------
    u : ndarray of int64, shape (batch, n, N)
        Basis membranes, updated in place.
    vth, reset, intensity : ndarray of int64, shape (N,)
        Column ``k`` of the tables.
    out_bias : int
        ``B``: the output bias at the first output step, else 0.
    shift : ndarray of int64, shape (batch, n), or int
        Output shift of every unit.

    Returns
    -------
    payload : ndarray of int64, shape (batch, n)
        The graded value ``P`` each unit emits.
    spikes : ndarray of int64, shape (batch, n)
        Bases that fired, per unit.
    """
    s = u >= vth
    u -= np.where(s, reset, 0)
    return shift_floor(np.where(s, intensity, 0).sum(axis=-1) + out_bias, shift), s.sum(axis=-1)
