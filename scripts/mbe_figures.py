"""Print the MBE figures of docs/mbe.md from the shipped primitives (seeded; about 20 s).

    python scripts/mbe_figures.py                # fitting MSE table, operator errors
    python scripts/mbe_figures.py --paper-form   # also refit with c_n = lo (about 3 min)
    python scripts/mbe_figures.py --identity     # also the N = 8 identities' weights and rates per basis

1. Fitting MSE per primitive and N at T = 16 (float form, recomputed from the shipped cache) and
   the MSE of the integer lookup-table form (in_bits = T + 4, 16 output fraction bits).
2. Operator errors against the float operators on seeded random inputs.
"""

from __future__ import annotations

import sys

import numpy as np

from spikeforge.models.mbe import mbe_apply_int, to_lut
from spikeforge.models.mbe_fit import PRIMITIVES, PrimitiveCache, fit_mse, fit_nested, gelu
from spikeforge.models.mbe_ops import (
    MBEPrimitives,
    spike_matmul,
    spike_product,
    spiking_gelu,
    spiking_layernorm,
    spiking_softmax,
)


def fit_table(cache: PrimitiveCache) -> None:
    print("| primitive | range | N = 1 | N = 2 | N = 4 | N = 8 | N = 8, integer LUT form |")
    print("|---|---|---|---|---|---|---|")
    for name, (f, (lo, hi), _) in PRIMITIVES.items():
        errs = [fit_mse(cache.get(name, n, 16, lo, hi)) for n in (1, 2, 4, 8)]
        x = lo + (hi - lo) * (np.arange(10_000) + 0.5) / 10_000
        _, y = mbe_apply_int(x, to_lut(cache.get(name, 8, 16, lo, hi)))
        mse_int = float(np.mean((y - f(x)) ** 2))
        print(f"| {name} | [{lo:g}, {hi:g}] | " + " | ".join(f"{e:.2e}" for e in errs) + f" | {mse_int:.2e} |")


def operator_errors(cache: PrimitiveCache) -> None:
    rng = np.random.default_rng(0)
    prims = MBEPrimitives.load(16, 8, cache, fit=False)
    print("\n| operator | inputs | max abs error | RMS error |\n|---|---|---|---|")

    def row(name: str, inputs: str, err: np.ndarray) -> None:
        print(f"| {name} | {inputs} | {np.abs(err).max():.2e} | {np.sqrt(np.mean(err**2)):.2e} |")

    x = np.linspace(-120, 10, 100_001)
    row("GELU (N = 4)", "grid on [-120, 10]", spiking_gelu(x, cache.get("gelu", 4, 16, -120.0, 10.0)) - gelu(x))
    x = np.linspace(-8, 8, 100_001)
    row(
        "GELU (N = 4) restricted to [-8, 8]",
        "same neuron",
        spiking_gelu(x, cache.get("gelu", 4, 16, -120.0, 10.0)) - gelu(x),
    )
    a, b = rng.uniform(-3, 5, 100_000), rng.uniform(-1, 2, 100_000)
    row("product x1 x2", "U[-3, 5] x U[-1, 2]", spike_product(a, b, prims.identity, (-3.0, 5.0), (-1.0, 2.0)) - a * b)
    A, B = rng.uniform(-2, 2, (64, 16, 16)), rng.uniform(-2, 2, (64, 16, 16))
    row("matmul (d = 16)", "U[-2, 2]", spike_matmul(A, B, prims.identity, (-2.0, 2.0), (-2.0, 2.0)) - A @ B)
    worst_sum = worst = 0.0
    for scale in (0.5, 2.0, 8.0):
        s = rng.normal(0, scale, (2000, 16))
        p = spiking_softmax(s, prims)
        e = np.exp(s - s.max(-1, keepdims=True))
        worst_sum = max(worst_sum, np.abs(p.sum(-1) - 1).max())
        worst = max(worst, np.abs(p - e / e.sum(-1, keepdims=True)).max())
    print(f"| softmax (16 per row) | N(0, 0.5, 2, 8) | {worst:.2e} | row sums within {worst_sum:.2e} of 1 |")
    x = rng.normal(0.5, 2.0, (2000, 32))
    g, bt = rng.uniform(0.5, 1.5, 32), rng.normal(0, 0.1, 32)
    xc = x - x.mean(-1, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(-1) + 1e-5)
    y = spiking_layernorm(x, g, bt, prims, (float(xc.min()), float(xc.max())), (0.0, float(r.max()) * 1.01))
    row("LayerNorm (d = 32)", "N(0.5, 2)", y - (xc * r[:, None] * g + bt))


def paper_form_table() -> None:
    """Same fits with the paper's form (no free offsets: ``c_n = lo``)."""
    print("\n| primitive (c_n = lo) | N = 1 | N = 2 | N = 4 | N = 8 |\n|---|---|---|---|---|")
    for name in ("gelu", "exp2", "inv", "invsqrt"):
        res = fit_nested(name, free_offsets=False)
        print(f"| {name} | " + " | ".join(f"{res[n][1]:.2e}" for n in (1, 2, 4, 8)) + " |", flush=True)


def identity_bases() -> None:
    """Output weight and firing rate (uniform input on [0, 1]) of each basis of the N = 8 identities."""
    from spikeforge.models.mbe import mbe_encode
    from spikeforge.models.mbe_convert import VIT_CACHE_PATH
    from spikeforge.models.mbe_fit import PRIMITIVES_PATH

    cache = PrimitiveCache(VIT_CACHE_PATH, also=(PRIMITIVES_PATH,))
    x = np.linspace(0.0, 1.0, 10_001)
    print("\n| T | abs(w) per basis | firing rate per basis | overall |\n|---|---|---|---|")
    for t in (8, 10, 12, 16):
        p = cache.get("identity", 8, t, 0.0, 1.0)
        rate = mbe_encode(x, p).mean(axis=(0, 2))
        w = " ".join(f"{v:.1e}" for v in np.abs(p.w))
        print(f"| {t} | {w} | " + " ".join(f"{r:.2f}" for r in rate) + f" | {rate.mean():.3f} |")


if __name__ == "__main__":
    c = PrimitiveCache()
    fit_table(c)
    operator_errors(c)
    if "--identity" in sys.argv[1:]:
        identity_bases()
    if "--paper-form" in sys.argv[1:]:
        paper_form_table()
