"""QCFS quantizer, BatchNorm folding and float-to-integer scaling (numpy).

QCFS (Bu et al., ICLR 2022) with ``L`` levels and threshold ``lambda``::

    h(z) = lambda * clip(floor(z * L / lambda + 1/2) / L, 0, 1)

BatchNorm folded into the preceding linear/conv layer (eval mode)::

    W' = (gamma / sigma) W,   b' = gamma (b - mu) / sigma + beta,   sigma = sqrt(var + eps)
"""

from __future__ import annotations

import numpy as np

__all__ = ["qcfs", "qcfs_code", "fold_batchnorm", "integer_scale", "round_half_away"]


def qcfs_code(z: np.ndarray, lam: float, levels: int) -> np.ndarray:
    """Integer QCFS code ``clip(floor(z L / lambda + 1/2), 0, L)``."""
    return np.clip(np.floor(np.asarray(z, np.float64) * levels / lam + 0.5), 0, levels)


def qcfs(z: np.ndarray, lam: float, levels: int) -> np.ndarray:
    """QCFS quantizer value ``lambda * code / L``."""
    return qcfs_code(z, lam, levels) * (lam / levels)


def fold_batchnorm(
    weight: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an eval-mode BatchNorm into the layer before it (output channels on axis 0).

    Returns
    -------
    weight, bias : ndarray
        ``W' = (gamma / sigma) W`` and ``b' = gamma (b - mu) / sigma + beta``.
    """
    sigma = np.sqrt(np.asarray(var, np.float64) + eps)
    g = np.asarray(gamma, np.float64) / sigma
    w = np.asarray(weight, np.float64) * g.reshape((-1,) + (1,) * (np.ndim(weight) - 1))
    b0 = np.zeros_like(g) if bias is None else np.asarray(bias, np.float64)
    return w, g * (b0 - np.asarray(mean, np.float64)) + np.asarray(beta, np.float64)


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Round to nearest, ties away from zero (deterministic across platforms)."""
    x = np.asarray(x, np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def integer_scale(max_abs_weight: float, weight_bits: int) -> float:
    """Scale ``S`` mapping the largest float weight magnitude to ``2**(bits-1) - 1``."""
    wmax = (1 << (weight_bits - 1)) - 1
    return wmax / max_abs_weight if max_abs_weight > 0 else 1.0
