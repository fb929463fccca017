"""What each slot of a piece receives and delivers: the reference semantics of a core's
address generation (``docs/architecture.md`` section 2).

:func:`slot_sources` answers "which source neurons must send to this slot" (it drives the
routing tables); :func:`deliver` answers "an event from source ``s`` arrives in this slot: which
local neurons get which weight" (what the core does, and what the tests compose back into the
graph's connectivity).
"""

from __future__ import annotations

import numpy as np

from spikeforge.models.graph import SNNGraph
from spikeforge.models.projections import pool_windows

from .pieces import Piece, Slot

__all__ = ["slot_sources", "slot_source_count", "deliver", "conv_reach"]


def _reach_1d(lo: int, hi: int, stride: int, pad: int, k: int, size: int) -> np.ndarray:
    """Input coordinates reached by output coordinates ``lo..hi-1`` through a kernel of ``k``."""
    o = np.arange(lo, hi)[:, None] * stride + np.arange(k)[None, :] - pad
    o = np.unique(o)
    return o[(o >= 0) & (o < size)]


def conv_reach(coord: int, pad: int, k: int, stride: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """``(output coordinate, kernel tap)`` pairs with ``out * stride + tap - pad == coord``, out in ``lo..hi-1``."""
    out = []
    for tap in range(k):
        q, r = divmod(coord + pad - tap, stride)
        if r == 0 and lo <= q < hi:
            out.append((q, tap))
    return out


def slot_sources(graph: SNNGraph, piece: Piece, slot: Slot) -> np.ndarray:
    """Sorted global indices of the source neurons whose events this slot needs."""
    proj = graph.projections[slot.proj]
    g = piece.geometry
    if slot.kind == "conv":
        ci, h, w = graph.population(proj.src).shape
        _, _, kh, kw = proj.kernel.shape
        ys = _reach_1d(g["y0"], g["y1"], proj.stride, proj.padding, kh, h)
        xs = _reach_1d(g["x0"], g["x1"], proj.stride, proj.padding, kw, w)
        cs = np.arange(slot.lo, slot.hi)
        return (cs[:, None, None] * h * w + ys[None, :, None] * w + xs[None, None, :]).reshape(-1)
    if slot.kind == "dense":
        return np.arange(slot.lo, slot.hi)
    if slot.kind == "pool_dense":
        src = graph.population(proj.src)
        hw = src.size // src.shape[0]
        return np.arange(slot.lo * hw, slot.hi * hw)
    if slot.kind == "identity":
        return np.sort(piece.neurons)
    if slot.kind == "product_a":
        return np.unique(proj.a_index[g["h"], g["i0"] : g["i1"], :])
    if slot.kind == "product_b":
        return np.unique(proj.b_index[g["h"], :, g["j0"] : g["j1"]])
    if slot.kind == "pool":
        windows = pool_windows(proj, graph.population(proj.src))
        return np.unique(windows[piece.neurons])
    raise ValueError(f"unknown slot kind {slot.kind!r}")


def _reach_count(lo: int, hi: int, stride: int, pad: int, k: int, size: int) -> int:
    """``_reach_1d(...).size``; closed form when taps cover every input between (``k >= stride``)."""
    if k < stride:
        return int(_reach_1d(lo, hi, stride, pad, k, size).size)
    return max(0, min(size, (hi - 1) * stride + k - pad) - max(0, lo * stride - pad))


def slot_source_count(graph: SNNGraph, piece: Piece, slot: Slot) -> int:
    """``len(slot_sources(...))`` without building the index list where geometry gives it."""
    proj = graph.projections[slot.proj]
    g = piece.geometry
    if slot.kind == "conv":
        _, h, w = graph.population(proj.src).shape
        _, _, kh, kw = proj.kernel.shape
        ys = _reach_count(g["y0"], g["y1"], proj.stride, proj.padding, kh, h)
        xs = _reach_count(g["x0"], g["x1"], proj.stride, proj.padding, kw, w)
        return (slot.hi - slot.lo) * ys * xs
    if slot.kind == "pool":  # non-overlapping windows (kernel == stride): distinct inputs
        return piece.n * proj.kernel**2
    if slot.kind == "dense":
        return slot.hi - slot.lo
    if slot.kind == "pool_dense":
        src = graph.population(proj.src)
        return (slot.hi - slot.lo) * (src.size // src.shape[0])
    if slot.kind == "product_a":  # operand maps name each source once (checked by the partitioner)
        return (g["i1"] - g["i0"]) * proj.a_index.shape[2]
    if slot.kind == "product_b":
        return proj.b_index.shape[1] * (g["j1"] - g["j0"])
    return int(slot_sources(graph, piece, slot).size)


def deliver(graph: SNNGraph, piece: Piece, slot: Slot, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Local targets and weights of an event from source index ``s`` arriving in ``slot``.

    Defined for the weight-holding slots (``conv``, ``dense``, ``pool_dense``, ``identity``);
    for partial pieces the local indices are the root's (same neuron order).
    """
    proj = graph.projections[slot.proj]
    if slot.kind == "conv":
        ci, h, w = graph.population(proj.src).shape
        c, rem = divmod(int(s), h * w)
        y, x = divmod(rem, w)
        if not slot.lo <= c < slot.hi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        g = piece.geometry
        cb, tw = g["c1"] - g["c0"], g["x1"] - g["x0"]
        _, _, kh, kw = proj.kernel.shape
        targets, weights = [], []
        for oy, u in conv_reach(y, proj.padding, kh, proj.stride, g["y0"], g["y1"]):
            for ox, v in conv_reach(x, proj.padding, kw, proj.stride, g["x0"], g["x1"]):
                pos = (oy - g["y0"]) * tw + (ox - g["x0"])
                targets.append(pos * cb + np.arange(cb))
                weights.append(proj.kernel[g["c0"] : g["c1"], c, u, v])
        if not targets:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(targets), np.concatenate(weights).astype(np.int64)
    if slot.kind == "dense":
        if not slot.lo <= s < slot.hi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.arange(piece.n), proj.weight[piece.neurons, s]
    if slot.kind == "pool_dense":
        src = graph.population(proj.src)
        c = int(s) // (src.size // src.shape[0])
        if not slot.lo <= c < slot.hi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.arange(piece.n), proj.weight[piece.neurons, c]
    if slot.kind == "identity":
        local = np.flatnonzero(piece.neurons == s)
        return local, np.full(local.size, proj.weight, np.int64)
    raise ValueError(f"deliver() does not cover {slot.kind!r} slots")
