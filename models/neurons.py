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

__all__ = ["if_fire", "quantized_code", "maxpool_step", "mbe_start", "mbe_fire"]


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
    ndarray of int8, shape (batch, n_dst)
        ``o[t]``, binary when the inputs are binary spike trains.
    """
    cur = counts[:, windows].max(axis=2)
    out = cur - prev_max
    prev_max[...] = cur
    return out.astype(np.int8)


def mbe_start(x: np.ndarray, offset: np.ndarray, x_lo: int, x_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Clamp the input accumulators and start the basis membranes of an integer MBE unit.

    ``U_n = clip(X, x_lo, x_hi) - C_n``.

    Parameters
    ----------
    x : ndarray of int64, shape (batch, n)
        Input accumulators ``X``.
    offset : ndarray of int64, shape (N,)
        Basis offsets ``C_n``.
    x_lo, x_hi : int
        Calibrated input range.

    Returns
    -------
    u : ndarray of int64, shape (batch, n, N)
    clipped : ndarray of bool, shape (batch, n)
        Units whose ``X`` was outside ``[x_lo, x_hi]``.
    """
    clipped = (x < x_lo) | (x > x_hi)
    return np.clip(x, x_lo, x_hi)[..., None] - offset, clipped


def mbe_fire(u: np.ndarray, vth: np.ndarray, reset: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One output step ``k`` of integer MBE units: ``s = U >= VTH[:, k]``, ``U -= s R[:, k]``, ``P = sum_n s DI[:, k]``.

    Parameters
    ----------
    u : ndarray of int64, shape (batch, n, N)
        Basis membranes, updated in place.
    vth, reset, intensity : ndarray of int64, shape (N,)
        Column ``k`` of the tables.

    Returns
    -------
    payload : ndarray of int64, shape (batch, n)
        The graded value ``P`` each unit emits.
    spikes : ndarray of int64, shape (batch, n)
        Bases that fired, per unit.
    """
    s = u >= vth
    u -= np.where(s, reset, 0)
    return np.where(s, intensity, 0).sum(axis=-1), s.sum(axis=-1)
