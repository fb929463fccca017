"""What each projection delivers, in integers, for a batch of source outputs.

Shared by the functional executor (one time step at a time) and the integer-ANN evaluator
(whole-window totals): for every kind except ``product`` and ``pool`` a projection is a linear
map ``I_dst = M x_src``, and the same function computes it in both places.

Arrays are batched: ``x`` has shape ``(batch, n_src)`` and results ``(batch, n_dst)``, all
``int64``.
"""

from __future__ import annotations

import weakref

import numpy as np

from .graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    PoolDenseProjection,
    PoolProjection,
    Population,
    ProductProjection,
    Projection,
)

__all__ = ["propagate_linear", "pool_windows", "product_operands", "product_total"]


def _conv(proj: ConvProjection, x: np.ndarray, src_shape: tuple[int, ...]) -> np.ndarray:
    """Direct convolution by im2col: ``y[o,i,j] = sum_{c,u,v} K[o,c,u,v] x[c, s*i+u-p, s*j+v-p]``."""
    b = x.shape[0]
    c, h, w = src_shape
    co, _, kh, kw = proj.kernel.shape
    p, s = proj.padding, proj.stride
    img = np.zeros((b, c, h + 2 * p, w + 2 * p), dtype=np.int64)
    img[:, :, p : p + h, p : p + w] = x.reshape(b, c, h, w)
    win = np.lib.stride_tricks.sliding_window_view(img, (kh, kw), axis=(2, 3))[:, :, ::s, ::s]
    ho, wo = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw)
    out = cols @ proj.kernel.reshape(co, c * kh * kw).T
    return out.reshape(b, ho, wo, co).transpose(0, 3, 1, 2).reshape(b, co * ho * wo)


def propagate_linear(proj: Projection, x: np.ndarray, src: Population) -> np.ndarray:
    """Input current a linear projection delivers for source output ``x`` of shape ``(batch, n_src)``.

    Parameters
    ----------
    proj : DenseProjection, ConvProjection, IdentityProjection or PoolDenseProjection
        The projection.
    x : ndarray of int64, shape (batch, n_src)
        Source outputs (spikes at one step, or counts over a window).
    src : Population
        The source population (for its shape).

    Returns
    -------
    ndarray of int64, shape (batch, n_dst)
    """
    x = np.asarray(x, dtype=np.int64)
    if isinstance(proj, DenseProjection):
        return _int_matmul(x, proj.weight.T, proj)
    if isinstance(proj, ConvProjection):
        return _conv(proj, x, src.shape)
    if isinstance(proj, IdentityProjection):
        return x * proj.weight
    if isinstance(proj, PoolDenseProjection):
        c = src.shape[0]
        return x.reshape(x.shape[0], c, -1).sum(axis=2) @ proj.weight.T
    raise TypeError(f"{proj.kind} projections are not linear maps")


_FLOAT_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _int_matmul(x: np.ndarray, w: np.ndarray, key: object = None) -> np.ndarray:
    """``x @ w`` of int64 arrays, through float64 BLAS when every partial sum is an exact float.

    Each partial sum is bounded by ``max |x| * max_column sum |w|``; below ``2**53`` float64
    represents all of them exactly, so the result is the integer product (numpy's int64 matmul
    has no BLAS and is tens of times slower on batches). ``key`` (a projection) caches the float
    copy of ``w`` and its column bound across steps.
    """
    if x.size == 0 or w.size == 0:
        return x @ w
    cached = _FLOAT_WEIGHTS.get(key) if key is not None else None
    if cached is None:
        cached = (w.astype(np.float64), int(np.abs(w).sum(axis=0).max()))
        if key is not None:
            _FLOAT_WEIGHTS[key] = cached
    wf, col = cached
    if int(np.abs(x).max()) * col < 2**53:
        return np.rint(x.astype(np.float64) @ wf).astype(np.int64)
    return x @ w


def pool_windows(proj: PoolProjection, src: Population) -> np.ndarray:
    """Source indices of each max-pool window, shape ``(n_dst, kernel * kernel)``."""
    c, h, w = src.shape
    k, s = proj.kernel, proj.stride
    idx = np.arange(c * h * w).reshape(c, h, w)
    win = np.lib.stride_tricks.sliding_window_view(idx, (k, k), axis=(1, 2))[:, ::s, ::s]
    return win.reshape(-1, k * k).copy()


def product_operands(proj: ProductProjection, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``(batch, H, I, C)`` and ``(batch, H, C, J)`` operand blocks from flat outputs."""
    return a[:, proj.a_index], b[:, proj.b_index]


def product_total(proj: ProductProjection, a_total: np.ndarray, b_total: np.ndarray, n_dst: int) -> np.ndarray:
    """The dense product ``w * A B`` of whole-window counts, scattered to ``(batch, n_dst)``."""
    ga, gb = product_operands(proj, np.asarray(a_total, np.int64), np.asarray(b_total, np.int64))
    out = np.zeros((ga.shape[0], n_dst), dtype=np.int64)
    out[:, proj.out_index] = proj.weight * (ga @ gb)
    return out
