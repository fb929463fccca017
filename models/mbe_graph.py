"""MBE conversion to the integer SNN graph: the MLP as MBE populations the core array runs.

Algorithm 1 of the MBE paper (calibrate, fit or load, replace), ending in an
:class:`~spikeforge.models.graph.SNNGraph` instead of a float model:

1. Calibrate the pre-activation range ``[lo, hi]`` of every hidden layer on training images
   (widened by ``margin`` and rounded outwards as for the ViT).
2. Fit or load ``MBE_gelu`` (``N = 4`` by default) on each range, at ``T`` steps (cached in
   ``mbe_params/tiny-digits-mlp.json``).
3. Replace: each linear layer becomes a dense projection of ``weight_bits``-bit weights
   ``Wq = round(W / s)`` (``s = max |W| / (2**(weight_bits-1) - 1)``, per layer; the one
   departure from "weights unchanged", which the integer hardware needs), each GELU an
   :class:`~spikeforge.models.graph.MBEPopulation` whose tables are the fitted neuron in the
   units of its input accumulator.

Units. The input population emits the pixel codes ``x`` at each of ``T`` steps, so the first
hidden layer accumulates ``X = T (Wq x + b')`` and ``z = q X`` with ``q = s / (input_max T)``.
An MBE unit emits ``P[k] = sum_n s_n[k] DI[n, k]`` with ``DI = round(D 2**f)``, so a later layer
accumulates ``X = Wq sum_k P[k] + T b'`` and ``z = q X`` with ``q = s 2**-f``; the MBE neuron's
output bias ``b_f`` and the float bias go into ``b'``, spread over the ``T`` steps. The MBE
tables are the float kernels divided by ``q`` (thresholds, resets, offsets, range) and rounded.
``f`` (``out_frac_bits``) is the largest that keeps every accumulator, with ``headroom`` times
the calibrated maxima, inside ``v_bits``.

Regenerate the shipped fits and print the accuracy of the converted graph (functional executor)::

    python -m spikeforge.models.mbe_graph --write-cache --timesteps 8 12 16
"""

from __future__ import annotations

import argparse
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import Dataset, load_digits
from .graph import DenseProjection, InputPopulation, MBEPopulation, OutputPopulation, SNNGraph, signed_range
from .mbe import MBEError, MBEParams
from .mbe_convert import _round_out
from .mbe_fit import PrimitiveCache, gelu
from .mlp import MLPCheckpoint, load_mlp, mlp_forward

__all__ = ["MLP_CACHE_PATH", "calibrate_mlp", "main", "mbe_population", "mlp_to_mbe_graph", "quantize_layer"]

MLP_CACHE_PATH = Path(str(resources.files(__package__).joinpath("mbe_params", "tiny-digits-mlp.json")))


def calibrate_mlp(ckpt: MLPCheckpoint, images: np.ndarray, margin: float = 0.1) -> list[tuple[float, float]]:
    """Pre-activation range of every hidden layer (widened by ``margin``), from a float run."""
    if len(images) == 0:
        raise MBEError("calibration needs at least one image.")
    seen: list[tuple[float, float]] = []

    def watch(z: np.ndarray, layer: int) -> np.ndarray:
        seen.append((float(z.min()), float(z.max())))
        return gelu(z)

    mlp_forward(ckpt, images, watch)
    return [_round_out(lo, hi, margin) for lo, hi in seen]


def quantize_layer(w: np.ndarray, weight_bits: int) -> tuple[np.ndarray, float]:
    """``(Wq, s)`` with ``Wq = round(W / s)``, ``s = max |W| / (2**(weight_bits-1) - 1)``."""
    top = (1 << (weight_bits - 1)) - 1
    s = float(np.abs(w).max()) / top
    if s == 0:
        raise MBEError("a layer's weights are all zero; nothing to quantize.")
    return np.rint(w / s).astype(np.int64), s


def mbe_population(name: str, params: MBEParams, q: float, out_frac_bits: int, bias: np.ndarray) -> MBEPopulation:
    """The integer MBE units of ``params`` for inputs ``x = q X``; outputs ``P`` in units ``2**-out_frac_bits``."""
    vth, reset, intensity = params.kernels()
    scale = 2.0**out_frac_bits
    return MBEPopulation(
        name,
        (len(bias),),
        vth=np.rint(vth / q).astype(np.int64),
        reset=np.rint(reset / q).astype(np.int64),
        intensity=np.rint(intensity * scale).astype(np.int64),
        offset=np.rint(params.offset / q).astype(np.int64),
        bias=np.asarray(bias, np.int64),
        x_lo=int(math.ceil(params.lo / q)),
        x_hi=int(math.floor(params.hi / q)),
    )


def _frac_bits(
    peaks: list[float], scales: list[float], input_scale: float, v_bits: int, headroom: float, max_f: int = 24
) -> int:
    """Largest ``f`` with ``headroom * peak / q <= 2**(v_bits-1) - 1`` for every layer after the first."""
    top = (1 << (v_bits - 1)) - 1
    if headroom * peaks[0] / input_scale > top:
        raise MBEError(
            f"the first layer's accumulator needs {math.log2(headroom * peaks[0] / input_scale) + 1:.1f} bits "
            f"with headroom {headroom}; raise v_bits above {v_bits}."
        )
    f = max_f
    for peak, s in zip(peaks[1:], scales[1:]):
        # q = s 2**-f: need headroom * peak * 2**f / s <= top
        f = min(f, math.floor(math.log2(top * s / (headroom * max(peak, 1e-12)))))
    if f < 1:
        raise MBEError(f"no output precision fits {v_bits}-bit accumulators (f = {f}); raise v_bits.")
    return f


def mlp_to_mbe_graph(
    ckpt: MLPCheckpoint | None = None,
    timesteps: int = 16,
    data: Dataset | None = None,
    calib_samples: int = 256,
    n_gelu: int = 4,
    weight_bits: int = 8,
    v_bits: int = 24,
    headroom: float = 4.0,
    margin: float = 0.1,
    cache: PrimitiveCache | None = None,
    fit: bool = True,
) -> SNNGraph:
    """Convert a float GELU MLP (default: the bundled ``tiny-digits-mlp``) to an integer MBE graph.

    Parameters
    ----------
    ckpt : MLPCheckpoint, optional
    timesteps : int
        ``T`` of every MBE neuron (and of the graph).
    data : Dataset, optional
        Calibration images are ``data.x_train[:calib_samples]`` (default: the bundled digits).
    n_gelu : int
        Bases of each GELU neuron.
    weight_bits, v_bits : int
        Widths of the graph (the hardware's ``[core]`` widths must be at least these).
    headroom : float
        Accumulators are sized for ``headroom`` times the calibrated peak.
    cache : PrimitiveCache, optional
        Default: the shipped MLP cache.
    fit : bool
        Fit what the cache lacks (seeded, a few seconds each); ``False`` raises instead.

    Returns
    -------
    SNNGraph
        ``input -> [dense -> mbe] x hidden -> dense -> output``; ``metadata`` records the method,
        ``out_frac_bits``, the ranges and the scales.
    """
    ckpt = load_mlp() if ckpt is None else ckpt
    data = load_digits() if data is None else data
    cfg = ckpt.config
    if int(np.prod(data.x_train.shape[1:])) != cfg.inputs:
        raise MBEError(f"the MLP takes {cfg.inputs} inputs but the data has images of shape {data.x_train.shape[1:]}.")
    cache = PrimitiveCache(MLP_CACHE_PATH) if cache is None else cache
    calib = data.x_train[:calib_samples]
    ranges = calibrate_mlp(ckpt, calib, margin)
    gelus = []
    for lo, hi in ranges:
        p = cache.get_or_fit("gelu", n_gelu, timesteps, lo, hi) if fit else cache.get("gelu", n_gelu, timesteps, lo, hi)
        if p is None:
            raise MBEError(f"no cached GELU fit with N = {n_gelu}, T = {timesteps} on [{lo}, {hi}]; fit it first.")
        gelus.append(p)
    quant = [quantize_layer(w, weight_bits) for w in ckpt.weights]
    # calibrated peaks of every accumulator: the hidden pre-activations, their ranges, the logits
    peaks = [max(abs(lo), abs(hi)) for lo, hi in ranges]
    peaks.append(float(np.abs(mlp_forward(ckpt, calib)).max()))
    input_scale = quant[0][1] / (cfg.input_max * timesteps)
    f = _frac_bits(peaks, [s for _, s in quant], input_scale, v_bits, headroom)
    T = timesteps
    value_bits = max(1, int(math.ceil(math.log2(cfg.input_max + 1))))
    pops: list[Any] = [InputPopulation("input", tuple(data.x_train.shape[1:]), value_bits=value_bits)]
    projs: list[Any] = []
    prev, prev_bias = "input", None  # prev_bias: the MBE output bias b_f of the layer before
    wlo, whi = signed_range(weight_bits)
    for layer, (wq, s) in enumerate(quant):
        if wq.min() < wlo or wq.max() > whi:
            raise MBEError(f"layer {layer}: quantized weights exceed {weight_bits} bits.")
        q = input_scale if layer == 0 else s * 2.0**-f
        real_bias = ckpt.biases[layer] + (0.0 if prev_bias is None else s * prev_bias * wq.sum(axis=1))
        bias = np.rint(real_bias / (q * T)).astype(np.int64)
        last = layer == len(quant) - 1
        name = "logits" if last else f"gelu{layer}"
        if last:
            pops.append(OutputPopulation(name, (wq.shape[0],), bias=bias))
        else:
            pops.append(mbe_population(name, gelus[layer], q, f, bias))
            prev_bias = gelus[layer].bias
        projs.append(DenseProjection(prev, name, weight=wq))
        prev = name
    meta = {
        "method": "mbe",
        "model": "tiny-digits-mlp",
        "out_frac_bits": f,
        "n_gelu": n_gelu,
        "ranges": [list(r) for r in ranges],
        "weight_scales": [s for _, s in quant],
        "gelu_fit_mse": [cache.entries.get(("gelu", n_gelu, T, lo, hi), (None, None))[1] for lo, hi in ranges],
    }
    return SNNGraph(tuple(pops), tuple(projs), T, weight_bits, v_bits, meta)


def main(argv: list[str] | None = None) -> None:
    """Convert ``tiny-digits-mlp`` at each T; print ANN and SNN accuracy on the test split."""
    from .executor import run_snn

    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.mbe_graph", description=main.__doc__)
    ap.add_argument("--timesteps", type=int, nargs="*", default=[8, 12, 16])
    ap.add_argument("--write-cache", action="store_true", help="fit what the MLP cache lacks and save it")
    args = ap.parse_args(argv)
    ckpt, data = load_mlp(), load_digits()
    cache = PrimitiveCache(MLP_CACHE_PATH)
    if args.write_cache:
        cache.meta = {"command": "python -m spikeforge.models.mbe_graph --write-cache", "numpy": np.__version__}
    ann = float(np.mean(mlp_forward(ckpt, data.x_test).argmax(1) == data.y_test))
    print("| T | steps | f | ANN (float) | SNN (MBE graph) | spikes / image | clipped units |")
    print("|---|---|---|---|---|---|---|")
    for t in args.timesteps:
        graph = mlp_to_mbe_graph(ckpt, t, data, cache=cache, fit=args.write_cache)
        run = run_snn(graph, data.x_test, record=False)
        snn = float(np.mean(run.logits.argmax(1) == data.y_test))
        spikes = sum(int(run.counts[p.name].sum()) for p in graph.populations if p.kind == "mbe") / len(data.x_test)
        clipped = sum(int(c.sum()) for c in run.clipped.values())
        print(
            f"| {t} | {graph.total_steps} | {graph.metadata['out_frac_bits']} | {ann:.4f} | {snn:.4f} | "
            f"{spikes:.0f} | {clipped} |"
        )
    if args.write_cache:
        cache.save()


if __name__ == "__main__":
    main()
