"""Small networks the RTL implements end to end, for the co-simulation tests and the speed figure."""

from __future__ import annotations

import numpy as np

from spikeforge.mapping import HardwareConfig, Program, compile
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig, NocConfig
from spikeforge.models.graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    MaxPoolPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolDenseProjection,
    PoolProjection,
    ProductProjection,
    SNNGraph,
    signed_range,
)

__all__ = [
    "attention_network",
    "attention_pair_network",
    "conv_network",
    "conv_stack_network",
    "dense_network",
    "dense_program",
    "pooled_network",
    "residual_conv_network",
]


def dense_network(
    seed: int,
    sizes: tuple[int, ...] = (12, 16),
    n_out: int = 3,
    *,
    weight_bits: int = 8,
    v_bits: int = 24,
    timesteps: int = 4,
    dif: bool = False,
    residual: bool = False,
) -> SNNGraph:
    """``in -> h1 -> ... -> out`` with random dense weights, thresholds, biases and ``v0``.

    ``dif``: every hidden population fires ``T - 1`` steps after its input window opens (DIF);
    ``residual``: the last two hidden layers (equal sizes) are also joined by an identity projection.
    """
    rng = np.random.default_rng(seed)
    wlo, whi = signed_range(weight_bits)
    wmax = min(whi, 40)
    pops: list = [InputPopulation("in", (sizes[0],), value_bits=4)]
    projs: list = []
    for k, n in enumerate(sizes[1:], start=1):
        name, prev = f"h{k}", "in" if k == 1 else f"h{k - 1}"
        fan_in = sizes[k - 1]
        pops.append(
            NeuronPopulation(
                name,
                (n,),
                threshold=rng.integers(wmax, 3 * wmax + 1, n) * (6 if k == 1 else 1),
                bias=rng.integers(-5, 6, n),
                v0=rng.integers(0, wmax, n),
                delay=timesteps - 1 if dif else 0,
            )
        )
        w = rng.integers(max(wlo, -wmax), wmax + 1, (n, fan_in)) * (rng.random((n, fan_in)) < 0.7)
        projs.append(DenseProjection(prev, name, w))
    if residual and len(sizes) >= 3 and sizes[-1] == sizes[-2]:
        projs.append(IdentityProjection(f"h{len(sizes) - 2}", f"h{len(sizes) - 1}", weight=int(wmax)))
    last = f"h{len(sizes) - 1}"
    pops.append(OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)))
    projs.append(DenseProjection(last, "out", rng.integers(max(wlo, -wmax), wmax + 1, (n_out, sizes[-1]))))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=timesteps, weight_bits=weight_bits, v_bits=v_bits)


def dense_program(
    graph: SNNGraph,
    rows: int,
    cols: int,
    *,
    neurons: int = 16,
    lanes: int = 4,
    axons: int | None = None,
    weight_bits: int = 8,
    v_bits: int = 24,
    pipeline_cycles: int = 3,
    input_fifo_events: int = 64,
    router_buffer_flits: int = 4,
) -> Program:
    """Compile ``graph`` on a ``rows x cols`` array of small cores (resident when it fits)."""
    core = CoreConfig(
        axons=axons or max(16, max(p.size for p in graph.populations)),
        neurons=neurons,
        lanes=lanes,
        weight_bits=weight_bits,
        v_bits=v_bits,
        pipeline_cycles=pipeline_cycles,
        input_fifo_events=input_fifo_events,
        spike_history_steps=8,
        slots=4,
        routing_entries=64,
    )
    noc = NocConfig(router_buffer_flits=router_buffer_flits)
    return compile(graph, HardwareConfig(array=ArrayConfig(rows, cols), core=core, noc=noc))


def _feature_maps(rng: np.random.Generator, name: str, shape: tuple[int, int, int], lo: int, hi: int):
    """IF neurons of ``shape`` with random thresholds in ``[lo, hi)``, biases and ``v0``."""
    n = int(np.prod(shape))
    return NeuronPopulation(
        name, shape, threshold=rng.integers(lo, hi, n), bias=rng.integers(-5, 6, n), v0=rng.integers(0, 40, n)
    )


def pooled_network(seed: int, channels: int = 2, side: int = 4, n_out: int = 3, *, timesteps: int = 4) -> SNNGraph:
    """``in (12 graded) -> h (channels, side, side) IF -> 2 x 2 max-pool -> out`` with random weights."""
    rng = np.random.default_rng(seed)
    n_h = channels * side * side
    n_p = channels * (side // 2) ** 2
    pops = (
        InputPopulation("in", (12,), value_bits=4),
        _feature_maps(rng, "h", (channels, side, side), 100, 300),
        MaxPoolPopulation("mp", (channels, side // 2, side // 2)),
        OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)),
    )
    projs = (
        DenseProjection("in", "h", rng.integers(-20, 41, (n_h, 12))),
        PoolProjection("h", "mp", kernel=2, stride=2),
        DenseProjection("mp", "out", rng.integers(-40, 41, (n_out, n_p))),
    )
    return SNNGraph(pops, projs, timesteps=timesteps)


def conv_network(seed: int, channels: int = 4, side: int = 6, n_out: int = 3, *, stride: int = 1) -> SNNGraph:
    """``in (1, side, side) graded -> 3 x 3 conv (padding 1) -> h (channels, ...) IF -> dense -> out``."""
    rng = np.random.default_rng(seed)
    ho = (side + 2 - 3) // stride + 1
    n_h = channels * ho * ho
    pops = (
        InputPopulation("in", (1, side, side), value_bits=4),
        _feature_maps(rng, "h", (channels, ho, ho), 150, 400),
        OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)),
    )
    projs = (
        ConvProjection("in", "h", rng.integers(-20, 41, (channels, 1, 3, 3)), stride=stride, padding=1),
        DenseProjection("h", "out", rng.integers(-40, 41, (n_out, n_h))),
    )
    return SNNGraph(pops, projs, timesteps=4)


def conv_stack_network(
    seed: int,
    channels: int = 4,
    side: int = 6,
    n_out: int = 3,
    *,
    layers: tuple[tuple[int, int, int, int], ...] = ((2, 2, 2, 0),),
    timesteps: int = 4,
) -> SNNGraph:
    """``in (1, side, side) graded -> 3 x 3 conv (padding 1) -> h1 -> conv -> h2 -> .. -> pool_dense -> out``:
    convolutions of different kernels, strides, paddings and source shapes, one per ``layers`` entry
    ``(kh, kw, stride, padding)`` after the first (by default one 2 x 2 with stride 2)."""
    rng = np.random.default_rng(seed)

    def neurons(name, h, w, lo, hi):
        return _feature_maps(rng, name, (channels, h, w), lo, hi)

    pops = [InputPopulation("in", (1, side, side), value_bits=4), neurons("h1", side, side, 150, 400)]
    projs = [ConvProjection("in", "h1", rng.integers(-20, 41, (channels, 1, 3, 3)), padding=1)]
    h, w = side, side
    for i, (kh, kw, stride, padding) in enumerate(layers, start=2):
        h, w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
        pops.append(neurons(f"h{i}", h, w, 40, 120))
        kernel = rng.integers(-30, 51, (channels, channels, kh, kw))
        projs.append(ConvProjection(f"h{i - 1}", f"h{i}", kernel, stride=stride, padding=padding))
    last = f"h{len(layers) + 1}"
    pops.append(OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)))
    projs.append(PoolDenseProjection(last, "out", rng.integers(-20, 21, (n_out, channels))))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=timesteps)


def residual_conv_network(seed: int, channels: int = 4, side: int = 6, n_out: int = 3) -> SNNGraph:
    """``in -> conv -> h1 -> conv -> h2 (+ identity from h1) -> pool_dense -> out``: a residual conv block."""
    rng = np.random.default_rng(seed)

    def neurons(name, lo, hi):
        return _feature_maps(rng, name, (channels, side, side), lo, hi)

    pops = (
        InputPopulation("in", (1, side, side), value_bits=4),
        neurons("h1", 150, 400),
        neurons("h2", 60, 160),
        OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)),
    )
    projs = (
        ConvProjection("in", "h1", rng.integers(-20, 41, (channels, 1, 3, 3)), padding=1),
        ConvProjection("h1", "h2", rng.integers(-30, 41, (channels, channels, 3, 3)), padding=1),
        IdentityProjection("h1", "h2", weight=25),
        PoolDenseProjection("h2", "out", rng.integers(-20, 21, (n_out, channels))),
    )
    return SNNGraph(pops, projs, timesteps=4)


def attention_network(seed: int, heads: int = 2, tokens: int = 4, head_dim: int = 4, n_out: int = 3) -> SNNGraph:
    """``in -> q, k (IF) -> att = q x k^T (spike x spike product, per head) -> out``: an attention score block.

    ``q`` is ``(heads, tokens, head_dim)`` and ``k`` ``(heads, head_dim, tokens)`` as flat populations;
    ``att[h, i, j] = w * sum_c q[h, i, c] k[h, c, j]`` through the running-count mode.
    """
    rng = np.random.default_rng(seed)
    nq = heads * tokens * head_dim
    na = heads * tokens * tokens

    def neurons(name, n, lo, hi):
        return NeuronPopulation(
            name, (n,), threshold=rng.integers(lo, hi, n), bias=rng.integers(-3, 4, n), v0=rng.integers(0, 20, n)
        )

    idx = np.arange(nq)
    a_index = idx.reshape(heads, tokens, head_dim)
    b_index = idx.reshape(heads, head_dim, tokens)
    out_index = np.arange(na).reshape(heads, tokens, tokens)
    pops = (
        InputPopulation("in", (12,), value_bits=4),
        neurons("q", nq, 100, 250),
        neurons("k", nq, 100, 250),
        neurons("att", na, 6, 20),
        OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)),
    )
    projs = (
        DenseProjection("in", "q", rng.integers(-10, 31, (nq, 12))),
        DenseProjection("in", "k", rng.integers(-10, 31, (nq, 12))),
        ProductProjection("q", "k", "att", a_index, b_index, out_index, weight=3),
        DenseProjection("att", "out", rng.integers(-20, 21, (n_out, na))),
    )
    return SNNGraph(pops, projs, timesteps=4)


def attention_pair_network(
    seed: int, tokens: int = 4, n_out: int = 3, *, timesteps: int = 4, relays: int = 0
) -> SNNGraph:
    """``in -> q, k, v (IF) -> att = q x k^T [-> r1 .. -> r{relays}] -> o = att x v -> out``: two products of
    one shape (``tokens x tokens`` blocks over ``tokens`` contraction indices) whose index tables differ.
    ``relays`` IF layers (identity projections) between ``att`` and the second product's ``a`` operand
    let the two products live at different steps (in swap mode, on one core one after the other).

    ``att[i, j] = sum_c q[i, c] k[c, j]`` with every population in row-major order; the second product
    reads ``att`` and ``v`` transposed (``a[i, c] = att[c * tokens + i]``, ``b[c, j] = v[j * tokens + c]``)
    and writes ``o`` transposed (``o[i, j]`` is neuron ``j * tokens + i``): its operand tables and its
    neurons' global indices are other tables than the first's, its structure the same.
    """
    rng = np.random.default_rng(seed)
    n = tokens * tokens

    def neurons(name, lo, hi):
        return NeuronPopulation(
            name, (n,), threshold=rng.integers(lo, hi, n), bias=rng.integers(-3, 4, n), v0=rng.integers(0, 20, n)
        )

    rows = np.arange(n).reshape(1, tokens, tokens)  # [i, c] -> i * tokens + c
    cols = rows.transpose(0, 2, 1).copy()  # [i, c] -> c * tokens + i
    pops = (
        InputPopulation("in", (12,), value_bits=4),
        neurons("q", 100, 250),
        neurons("k", 100, 250),
        neurons("v", 100, 250),
        neurons("att", 20, 80),
        *(neurons(f"r{r + 1}", 20, 40) for r in range(relays)),
        neurons("o", 20, 80),
        OutputPopulation("out", (n_out,), bias=rng.integers(-3, 4, n_out)),
    )
    chain = ["att"] + [f"r{r + 1}" for r in range(relays)]
    projs = (
        DenseProjection("in", "q", rng.integers(-10, 31, (n, 12))),
        DenseProjection("in", "k", rng.integers(-10, 31, (n, 12))),
        DenseProjection("in", "v", rng.integers(-10, 31, (n, 12))),
        ProductProjection("q", "k", "att", rows, rows, rows, weight=3),
        *(IdentityProjection(x, y, weight=30) for x, y in zip(chain, chain[1:])),
        # v arrives a step before att (and before each relay's output): delayed to align
        ProductProjection(chain[-1], "v", "o", cols, cols, cols, weight=2, delay_b=1 + relays),
        DenseProjection("o", "out", rng.integers(-20, 21, (n_out, n))),
    )
    return SNNGraph(pops, projs, timesteps=timesteps)
