"""Training-free conversion of a float ViT to an MBE spiking network (Algorithm 1 of the MBE paper).

1. Calibrate: run the float model on a few training batches and record, per operator site, the
   range of every operand an MBE neuron will encode (GELU inputs, both operands of every
   activation x activation product, LayerNorm's centred input and ``1 / std``). Each range is
   widened by ``margin`` of its width on both sides and rounded outwards to ``2**-4`` of the
   width's power of two, so cache keys are stable.
2. Fit or load primitives: GELU per site on its range (``N = 4``), and the fixed-range
   ``exp2``, ``inv``, ``invsqrt`` and ``identity`` (``N = 8``), all at ``T`` steps; cached in
   JSON (shipped: ``mbe_params/primitives.json`` and ``mbe_params/tiny-digits-vit.json``).
3. Replace operators: every operator of the model must have an MBE replacement
   (:data:`~spikeforge.models.mbe_ops.MBE_OPERATORS`); weights are unchanged.

Running the converted model counts, per site, the spikes and the values clipped to the
calibrated ranges (:class:`~spikeforge.models.mbe.MBELog`). Regenerate the shipped ViT cache and
print the accuracy table with::

    python -m spikeforge.models.mbe_convert --write-cache
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import Dataset, load_digits
from .mbe import MBEError, MBELog, MBEParams
from .mbe_fit import PRIMITIVES_PATH, PrimitiveCache
from .mbe_ops import (
    MBEPrimitives,
    check_operator,
    spike_matmul,
    spiking_gelu,
    spiking_layernorm,
    spiking_softmax,
)
from .vit import FloatOps, ViTCheckpoint, ViTConfig, load_vit, vit_forward

__all__ = [
    "VIT_CACHE_PATH",
    "MBEOps",
    "MBEViT",
    "calibrate_vit",
    "convert_vit_mbe",
    "evaluate_mbe_vit",
    "main",
    "mbe_stages",
    "run_mbe_vit",
    "vit_operators",
]

VIT_CACHE_PATH = Path(str(resources.files(__package__).joinpath("mbe_params", "tiny-digits-vit.json")))
Ranges = dict[str, dict[str, tuple[float, float]]]


def vit_operators(ckpt: ViTCheckpoint) -> list[str]:
    """Operator kinds the ViT uses, in order of first use."""
    return ["linear", "layernorm", "matmul", "softmax", "add", ckpt.config.activation]


class _CalibOps(FloatOps):
    """Float operators that record the range of every operand an MBE neuron will encode."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, list[float]]] = {}

    def _see(self, site: str, what: str, v: np.ndarray) -> None:
        r = self.seen.setdefault(site, {}).setdefault(what, [math.inf, -math.inf])
        r[0], r[1] = min(r[0], float(v.min())), max(r[1], float(v.max()))

    def gelu(self, x: np.ndarray, site: str) -> np.ndarray:
        self._see(site, "x", x)
        return super().gelu(x, site)

    def layernorm(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, site: str) -> np.ndarray:
        xc = x - x.mean(axis=-1, keepdims=True)
        self._see(site, "xc", xc)
        self._see(site, "rstd", 1.0 / np.sqrt((xc * xc).mean(axis=-1) + eps))
        return super().layernorm(x, gamma, beta, eps, site)

    def matmul(self, a: np.ndarray, b: np.ndarray, site: str) -> np.ndarray:
        self._see(site, "a", a)
        self._see(site, "b", b)
        return super().matmul(a, b, site)


def _round_out(lo: float, hi: float, margin: float) -> tuple[float, float]:
    width = max(hi - lo, 1e-6)
    lo, hi = lo - margin * width, hi + margin * width
    grid = 2.0 ** (math.floor(math.log2(width)) - 4)
    return math.floor(lo / grid) * grid, math.ceil(hi / grid) * grid


def calibrate_vit(ckpt: ViTCheckpoint, images: np.ndarray, margin: float = 0.1) -> Ranges:
    """Calibrated operand ranges per site from a float run on ``images`` (step 1 of the module docstring)."""
    if len(images) == 0:
        raise MBEError("calibration needs at least one image.")
    ops = _CalibOps()
    vit_forward(ckpt, images, ops)
    return {site: {k: _round_out(*v, margin) for k, v in d.items()} for site, d in ops.seen.items()}


@dataclass(frozen=True)
class MBEViT:
    """A ViT converted to MBE neurons at ``T`` steps: the float weights, ranges and primitives."""

    ckpt: ViTCheckpoint
    timesteps: int
    ranges: Ranges
    gelu: dict[str, MBEParams]
    prims: MBEPrimitives
    n_gelu: int = 4
    n_bases: int = 8
    n_identity: int = 8


def convert_vit_mbe(
    ckpt: ViTCheckpoint,
    calib_images: np.ndarray,
    timesteps: int = 16,
    n_gelu: int = 4,
    n_bases: int = 8,
    cache: PrimitiveCache | None = None,
    fit: bool = True,
    margin: float = 0.1,
    integer: bool = False,
    n_identity: int | None = None,
) -> MBEViT:
    """Algorithm 1: calibrate ranges, fit or load primitives, replace operators.

    Parameters
    ----------
    ckpt : ViTCheckpoint
    calib_images : ndarray
        A few batches of training images.
    timesteps : int
        ``T``.
    n_gelu, n_bases : int
        Bases of the GELU neurons and of the other primitives.
    cache : PrimitiveCache, optional
        Default: the shipped ViT cache, falling back to the shipped primitives.
    fit : bool
        Fit (seeded) what the cache lacks; ``False`` raises instead.
    margin : float
        Range widening (fraction of the calibrated width, each side).
    integer : bool
        Run every MBE neuron in its integer LUT form.
    n_identity : int, optional
        Bases of the identity neurons that encode product operands (default ``n_bases``, the
        paper's 8; 1 is the halving encoder, as accurate with an eighth of the spike slots).

    Raises
    ------
    MBEError
        An operator has no MBE replacement, or ``fit=False`` and a primitive is not cached.
    """
    for op in vit_operators(ckpt):
        check_operator(op)
    cache = PrimitiveCache(VIT_CACHE_PATH, also=(PRIMITIVES_PATH,)) if cache is None else cache
    ranges = calibrate_vit(ckpt, calib_images, margin)
    gelu = {}
    for site, r in ranges.items():
        if "x" in r:
            args = ("gelu", n_gelu, timesteps, *r["x"])
            p = cache.get_or_fit(*args) if fit else cache.get(*args)
            if p is None:
                raise MBEError(f"no cached GELU fit for site {site} (T = {timesteps}, range {r['x']}); fit it first.")
            gelu[site] = p
    prims = MBEPrimitives.load(timesteps, n_bases, cache, fit, integer, n_identity)
    return MBEViT(ckpt, timesteps, ranges, gelu, prims, n_gelu, n_bases, prims.identity.n_bases)


class MBEOps:
    """The MBE operators of a converted ViT; counts spikes and clipped values into ``log``."""

    def __init__(self, model: MBEViT, log: MBELog) -> None:
        self.m, self.log = model, log

    def gelu(self, x: np.ndarray, site: str) -> np.ndarray:
        return spiking_gelu(x, self.m.gelu[site], self.log, site, self.m.prims.integer)

    def silu(self, x: np.ndarray, site: str) -> np.ndarray:
        """SiLU has no MBE primitive (:func:`convert_vit_mbe` refuses such models before this runs)."""
        check_operator("silu")
        raise AssertionError("unreachable: check_operator raised")

    def softmax(self, x: np.ndarray, site: str) -> np.ndarray:
        return spiking_softmax(x, self.m.prims, -1, self.log, site)

    def layernorm(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, site: str) -> np.ndarray:
        r = self.m.ranges[site]
        return spiking_layernorm(x, gamma, beta, self.m.prims, r["xc"], r["rstd"], eps, self.log, site)

    def matmul(self, a: np.ndarray, b: np.ndarray, site: str) -> np.ndarray:
        r = self.m.ranges[site]
        return spike_matmul(a, b, self.m.prims.identity, r["a"], r["b"], self.log, site, self.m.prims.integer)


def run_mbe_vit(model: MBEViT, images: np.ndarray, log: MBELog | None = None, batch: int = 64) -> np.ndarray:
    """Logits of the MBE network for ``images``; spikes and clipped values go into ``log``."""
    log = MBELog() if log is None else log
    ops = MBEOps(model, log)
    return np.concatenate([vit_forward(model.ckpt, images[i : i + batch], ops) for i in range(0, len(images), batch)])


def mbe_stages(cfg: ViTConfig) -> int:
    """MBE neuron stages on the ViT's longest path; the network takes ``T`` steps per stage.

    Assumes a stage starts when its input is complete (the input is injected once) and that
    linear layers, sums, maxima and shifts add no steps. Per block: LayerNorm 3 (encode ``xc``,
    MBE_invsqrt, encode ``1/std``), Q K^T 1 (encode both operands), softmax 3 (MBE_exp2,
    MBE_inv, encode ``1/S``; ``e`` is encoded meanwhile), A V 1 (encode the attention; ``V`` is
    encoded meanwhile), LayerNorm 3, GELU 1; then the final LayerNorm, 3.
    """
    return cfg.blocks * (3 + 1 + 3 + 1 + 3 + 1) + 3


def _site_kind(site: str) -> str:
    """``blocks.0.attn.softmax.exp2`` -> ``softmax.exp2``: the site without its block prefix."""
    parts = site.split(".")
    if parts[0] == "blocks":
        parts = parts[2:]
    return ".".join(p for p in parts if p not in ("attn", "mlp"))


def _operator(kind: str) -> str:
    """``ln1.xc`` -> ``layernorm``, ``qk.b`` -> ``matmul``, ``softmax.inv`` -> ``softmax``."""
    head = kind.split(".")[0]
    if head.startswith("ln"):
        return "layernorm"
    return "matmul" if head in ("qk", "av") else head


def _rates(log: MBELog, key) -> dict[str, float]:
    acc: dict[str, list[int]] = {}
    for site in log.slots:
        k = acc.setdefault(key(site), [0, 0])
        k[0] += log.spikes.get(site, 0)
        k[1] += log.slots[site]
    return {k: v[0] / max(v[1], 1) for k, v in sorted(acc.items())}


def evaluate_mbe_vit(
    model: str | Path = "tiny-digits-vit",
    timesteps: int = 16,
    samples: int | None = None,
    data: Dataset | None = None,
    calib_samples: int = 256,
    fit: bool = True,
    integer: bool = False,
    n_identity: int | None = None,
) -> dict[str, Any]:
    """Convert the ViT at ``T`` steps and evaluate ANN and SNN on the test split.

    Parameters
    ----------
    model : str or Path
        ``"tiny-digits-vit"`` (bundled) or a ViT checkpoint path.
    timesteps : int
    samples : int, optional
        Evaluate the first ``samples`` test images only.
    data : Dataset, optional
        Default: the bundled digits.
    calib_samples : int
        Training images used for range calibration (the first ones).
    fit : bool
        Fit primitives the caches lack (slow) instead of raising.
    integer : bool
        Run every MBE neuron in its integer LUT form (the hardware's arithmetic).
    n_identity : int, optional
        Bases of the product operands' identity neurons (default 8, the paper's).

    Returns
    -------
    dict
        ``model``, ``timesteps``, ``samples``, ``neuron`` (``"mbe"``), ``integer_lut``,
        ``identity_bases``, ``accuracy`` (``ann_float``,
        ``snn``), ``agreement`` (share of equal predictions), ``logit_error`` (``max_abs``,
        ``rms``, and ``ann_logit_rms`` for scale), ``mbe_stages`` (:func:`mbe_stages`),
        ``total_steps`` (stages x T) and ``latency_steps`` (beyond the first T), ``spikes_per_inference``,
        ``spikes_per_population`` (per site, per image), ``firing_rate_per_operator`` (gelu,
        softmax, layernorm, matmul), ``firing_rate_per_primitive`` (each MBE neuron kind: e.g.
        ``softmax.exp2``, ``ln1.xc``), ``clipped`` (values clipped per site, with totals) and
        ``clipped_values``. Firing rate: spikes / (values x N x T).
    """
    ckpt = load_vit() if str(model) == "tiny-digits-vit" else load_vit(model)
    data = load_digits() if data is None else data
    x, y = data.x_test, data.y_test
    if samples is not None:
        if not 1 <= samples <= len(x):
            raise MBEError(f"samples must be in 1..{len(x)} (the test split's size), got {samples}.")
        x, y = x[:samples], y[:samples]
    mbe = convert_vit_mbe(
        ckpt, data.x_train[:calib_samples], timesteps, fit=fit, integer=integer, n_identity=n_identity
    )
    ann_logits = vit_forward(ckpt, x)
    log = MBELog()
    snn_logits = run_mbe_vit(mbe, x, log)
    ann, snn = ann_logits.argmax(1), snn_logits.argmax(1)
    err = snn_logits - ann_logits
    rep = log.report()
    n = len(x)
    return {
        "model": str(model),
        "timesteps": timesteps,
        "samples": n,
        "neuron": "mbe",
        "integer_lut": integer,
        "identity_bases": mbe.n_identity,
        "accuracy": {"ann_float": float(np.mean(ann == y)), "snn": float(np.mean(snn == y))},
        "agreement": float(np.mean(ann == snn)),
        "logit_error": {
            "max_abs": float(np.abs(err).max()),
            "rms": float(np.sqrt(np.mean(err**2))),
            "ann_logit_rms": float(np.sqrt(np.mean(ann_logits**2))),
        },
        "mbe_stages": mbe_stages(ckpt.config),
        "total_steps": mbe_stages(ckpt.config) * timesteps,
        "latency_steps": (mbe_stages(ckpt.config) - 1) * timesteps,
        "spikes_per_inference": sum(log.spikes.values()) / n,
        "spikes_per_population": {s: log.spikes[s] / n for s in sorted(log.spikes)},
        "firing_rate_per_operator": _rates(log, lambda site: _operator(_site_kind(site))),
        "firing_rate_per_primitive": _rates(log, _site_kind),
        "clipped": {s: {"clipped": r["clipped"], "total": r["total"]} for s, r in rep.items() if r["total"]},
        "clipped_values": log.n_clipped,
    }


def main(argv: list[str] | None = None) -> None:
    """Convert ``tiny-digits-vit`` at T = 8, 10, 12, 16 and print ANN/SNN accuracy and firing rates."""
    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.mbe_convert", description=main.__doc__)
    ap.add_argument("--timesteps", type=int, nargs="*", default=[8, 10, 12, 16])
    ap.add_argument("--write-cache", action="store_true", help="fit what the ViT cache lacks and save it")
    ap.add_argument("--json", type=Path, help="also write the reports to this file")
    ap.add_argument("--integer", action="store_true", help="run the MBE neurons in their integer LUT form")
    ap.add_argument("--n-identity", type=int, help="bases of the product operands' identity neurons (default 8)")
    args = ap.parse_args(argv)
    ckpt = load_vit()
    data = load_digits()
    if args.write_cache:
        cache = PrimitiveCache(VIT_CACHE_PATH, also=(PRIMITIVES_PATH,))
        cache.meta = {"command": "python -m spikeforge.models.mbe_convert --write-cache", "numpy": np.__version__}
        for t in args.timesteps:
            convert_vit_mbe(ckpt, data.x_train[:256], t, cache=cache, n_identity=args.n_identity)
            cache.save()
    reports = []
    print(
        "| T | ANN (float) | SNN (MBE) | agreement | logit error max / RMS | spikes / image | clipped values |\n"
        "|---|---|---|---|---|---|---|"
    )
    for t in args.timesteps:
        t0 = time.time()
        r = evaluate_mbe_vit(timesteps=t, data=data, fit=False, integer=args.integer, n_identity=args.n_identity)
        reports.append(r)
        acc = r["accuracy"]
        print(
            f"| {t} | {acc['ann_float']:.4f} | {acc['snn']:.4f} | {r['agreement']:.4f} | "
            f"{r['logit_error']['max_abs']:.3f} / {r['logit_error']['rms']:.4f} | "
            f"{r['spikes_per_inference']:.0f} | {r['clipped_values']} |  ({time.time() - t0:.0f} s)",
            flush=True,
        )
    stages = reports[0]["mbe_stages"]
    steps = ", ".join(f"{r['total_steps']} at T = {r['timesteps']}" for r in reports)
    print(f"\nMBE stages on the longest path: {stages}; total steps (stages x T): {steps}")
    for key in ("firing_rate_per_operator", "firing_rate_per_primitive"):
        print(f"\n{key.replace('_', ' ')} (spikes / (values x N x T)):")
        print("| | " + " | ".join(f"T = {r['timesteps']}" for r in reports) + " |")
        print("|---|" + "---|" * len(reports))
        for k in sorted(reports[0][key]):
            print(f"| {k} | " + " | ".join(f"{r[key][k]:.3f}" for r in reports) + " |")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1) + "\n")


if __name__ == "__main__":
    main()
