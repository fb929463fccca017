"""Fitting MBE neurons to functions on calibrated ranges, and the cache of fitted primitives.

The fit minimises the mean squared error ``mean_i (f_hat(x_i) - f(x_i))**2`` over ``S = 10,000``
evenly spaced samples ``x_i = lo + (hi - lo) (i + 1/2) / S`` (midpoints: deterministic, no
sampling noise). For fixed thresholds, resets and intensity decays the output is linear in
``(w, b)``, so those come from least squares; the four other parameters per basis
(``log(a / (hi - lo))`` and ``log(-log g)`` for the three decay factors) and the offset
fraction ``(c - lo) / (hi - lo)`` are searched (the spikes are a step function of them, so
there is no useful gradient):

1. bases are added one at a time; each new basis is the best of the halving kernels, a grid of
   halving kernels at 16 offsets x 5 amplitudes x 3 intensity decays, and 300 random draws;
2. after each addition a (1+1) evolution strategy perturbs one basis at a time (cyclically,
   ``iters_per_basis * N`` proposals, step size x1.3 on success, x0.97 on failure) and keeps
   proposals that do not increase the error.

Fits are nested: the ``N = 2`` fit starts from the ``N = 1`` result, and so on, so one run
gives every ``N`` up to the largest, and the error never grows with ``N``. Everything is
seeded (``numpy.random.default_rng(seed)``); the same numpy build gives the same parameters.

Regenerate the shipped cache (about 5 minutes on one core)::

    python -m spikeforge.models.mbe_fit --out models/mbe_params/primitives.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from .mbe import MBEError, MBEParams, mbe_apply

__all__ = [
    "PRIMITIVES",
    "PRIMITIVES_PATH",
    "PrimitiveCache",
    "fit_nested",
    "fit_primitive",
    "fit_mse",
    "gelu",
    "main",
]

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU ``x * Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (PyTorch's default)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


#: name -> (function, default range, default number of bases) of the paper's primitives.
PRIMITIVES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[float, float], int]] = {
    "gelu": (gelu, (-120.0, 10.0), 4),
    "identity": (lambda x: np.asarray(x, dtype=np.float64), (0.0, 1.0), 8),
    "exp2": (lambda x: np.exp2(x), (0.0, 1.0), 8),
    "inv": (lambda x: 1.0 / np.asarray(x, dtype=np.float64), (0.5, 1.0), 8),
    "invsqrt": (lambda x: 1.0 / np.sqrt(x), (0.5, 2.0), 8),
}

PRIMITIVES_PATH = Path(str(resources.files(__package__).joinpath("mbe_params", "primitives.json")))
_FORMAT = "spikeforge-mbe-primitives"

# Search box of the per-basis parameters (log a/W, log(-log g) for g_vth, g_r, g_d, offset fraction).
_LO = np.array([math.log(1e-3)] * 4 + [0.0])
_HI = np.array([math.log(2.0), math.log(4.0), math.log(4.0), math.log(4.0), 1.0])
_LN_LN2 = math.log(math.log(2.0))


def _function(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name not in PRIMITIVES:
        raise MBEError(f"no MBE primitive called {name!r}; known primitives: {', '.join(sorted(PRIMITIVES))}.")
    return PRIMITIVES[name][0]


def _samples(lo: float, hi: float, n: int) -> np.ndarray:
    return lo + (hi - lo) * (np.arange(n, dtype=np.float64) + 0.5) / n


def _basis_output(x: np.ndarray, lo: float, width: float, p: np.ndarray, timesteps: int) -> np.ndarray:
    """``sum_t s[t] g_d**t`` of one basis (unit weight) for search vector ``p``."""
    a = width * math.exp(p[0])
    g_v, g_r, g_d = np.exp(-np.exp(p[1:4]))
    u = x - (lo + p[4] * width)
    out = np.zeros_like(x)
    for t in range(timesteps):
        s = u >= a * g_v**t
        u = u - s * (a * g_r**t)
        out += s * g_d**t
    return out


def _lstsq_mse(feats: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    # Normal equations: the (N+1) x (N+1) system is ~75x faster than an SVD of the S x (N+1)
    # matrix, and the MSE is taken from the actual residual, so it is exact for the returned coef.
    coef, *_ = np.linalg.lstsq(feats.T @ feats, feats.T @ y, rcond=None)
    r = feats @ coef - y
    return float(np.mean(r * r)), coef


def _to_params(name: str, lo: float, hi: float, timesteps: int, P: np.ndarray, coef: np.ndarray) -> MBEParams:
    width = hi - lo
    return MBEParams(
        name=name,
        lo=lo,
        hi=hi,
        timesteps=timesteps,
        a=width * np.exp(P[:, 0]),
        g_vth=np.exp(-np.exp(P[:, 1])),
        g_r=np.exp(-np.exp(P[:, 2])),
        g_d=np.exp(-np.exp(P[:, 3])),
        w=coef[1:],
        offset=lo + P[:, 4] * width,
        bias=float(coef[0]),
    )


def fit_nested(
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    n_bases: Sequence[int] = (1, 2, 4, 8),
    timesteps: int = 16,
    seed: int = 0,
    samples: int = 10_000,
    iters_per_basis: int = 400,
    random_candidates: int = 300,
    free_offsets: bool = True,
) -> dict[int, tuple[MBEParams, float]]:
    """Fit primitive ``name`` for every ``N`` in ``n_bases`` in one nested run (module docstring).

    Parameters
    ----------
    name : str
        A key of :data:`PRIMITIVES`.
    lo, hi : float, optional
        Calibrated range (default: the primitive's).
    n_bases : sequence of int
        The ``N`` to return (each >= 1).
    timesteps : int
        ``T``.
    seed : int
    samples : int
        Number of evenly spaced fitting samples.
    iters_per_basis : int
        Evolution-strategy proposals per basis at each stage.
    random_candidates : int
        Random draws considered for each new basis.
    free_offsets : bool
        Search the per-basis offsets ``c_n``; ``False`` fixes ``c_n = lo`` (the paper's form).

    Returns
    -------
    dict of int to (MBEParams, float)
        Fitted neuron and its MSE on the fitting samples, per ``N``.
    """
    f = _function(name)
    dlo, dhi = PRIMITIVES[name][1]
    lo = float(dlo if lo is None else lo)
    hi = float(dhi if hi is None else hi)
    wanted = sorted({int(n) for n in n_bases})
    if not wanted or wanted[0] < 1:
        raise MBEError(f"MBE fits need N >= 1 bases, got {list(n_bases)}.")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise MBEError(f"MBE fits need a finite range lo < hi, got [{lo}, {hi}].")
    if timesteps < 1 or samples < 2:
        raise MBEError(f"MBE fits need timesteps >= 1 and samples >= 2, got {timesteps} and {samples}.")
    rng = np.random.default_rng(seed)
    x = _samples(lo, hi, samples)
    y = f(x)
    if not np.all(np.isfinite(y)):
        raise MBEError(f"{name} is not finite on [{lo}, {hi}]; choose a range inside its domain.")
    width = hi - lo
    halving = np.array([math.log(0.5), _LN_LN2, _LN_LN2, _LN_LN2, 0.0])
    grid = [
        np.array([math.log(amp), _LN_LN2, _LN_LN2, bd, off])
        for off in (np.arange(16) / 16 if free_offsets else [0.0])
        for amp in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
        for bd in (_LN_LN2, math.log(0.1), math.log(2.0))
    ]
    span = _HI - _LO
    P = np.zeros((0, 5))
    feats = np.ones((samples, 1))
    out: dict[int, tuple[MBEParams, float]] = {}
    while P.shape[0] < wanted[-1]:
        cands = [halving, *grid] + [_LO + span * rng.random(5) for _ in range(random_candidates)]
        if not free_offsets:
            for c in cands:
                c[4] = 0.0
        scores = [_lstsq_mse(np.column_stack([feats, _basis_output(x, lo, width, c, timesteps)]), y)[0] for c in cands]
        best_c = cands[int(np.argmin(scores))].copy()
        P = np.vstack([P, best_c])
        feats = np.column_stack([feats, _basis_output(x, lo, width, best_c, timesteps)])
        n = P.shape[0]
        best, coef = _lstsq_mse(feats, y)
        step = np.full(n, 0.3)
        for it in range(iters_per_basis * n):
            k = it % n
            p = np.clip(P[k] + rng.normal(0.0, step[k], 5), _LO, _HI)
            if not free_offsets:
                p[4] = 0.0
            trial = feats.copy()
            trial[:, k + 1] = _basis_output(x, lo, width, p, timesteps)
            m, c = _lstsq_mse(trial, y)
            if m <= best:
                best, coef, P[k], feats = m, c, p, trial
                step[k] = min(step[k] * 1.3, 1.0)
            else:
                step[k] = max(step[k] * 0.97, 1e-3)
        if n in wanted:
            params = _to_params(name, lo, hi, timesteps, P, coef)
            out[n] = (params, fit_mse(params, f, samples))
    return out


def fit_primitive(
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    n_bases: int | None = None,
    timesteps: int = 16,
    seed: int = 0,
    **kwargs,
) -> MBEParams:
    """Fit one MBE neuron to primitive ``name`` (default ``N``: the primitive's; see :func:`fit_nested`)."""
    _function(name)
    n = PRIMITIVES[name][2] if n_bases is None else int(n_bases)
    return fit_nested(name, lo, hi, (n,), timesteps, seed, **kwargs)[n][0]


def fit_mse(params: MBEParams, f: Callable[[np.ndarray], np.ndarray] | None = None, samples: int = 10_000) -> float:
    """MSE of the float MBE neuron against ``f`` (default: the primitive ``params.name``) on the fitting samples."""
    f = _function(params.name) if f is None else f
    x = _samples(params.lo, params.hi, samples)
    r = mbe_apply(x, params) - f(x)
    return float(np.mean(r * r))


def _key(name: str, n: int, timesteps: int, lo: float, hi: float) -> tuple:
    return (name, int(n), int(timesteps), float(lo), float(hi))


class PrimitiveCache:
    """Fitted MBE neurons keyed by ``(name, N, T, lo, hi)``, stored as JSON (never pickle).

    Parameters
    ----------
    path : str or Path, optional
        A JSON file written by :meth:`save` (need not exist yet); default: the primitives
        shipped with the package.
    also : sequence of str or Path
        Further files consulted (read-only) when ``path`` lacks an entry; :meth:`save` writes
        only ``path``'s own entries.
    """

    def __init__(self, path: str | Path | None = None, also: Sequence[str | Path] = ()) -> None:
        self.path = Path(path) if path is not None else PRIMITIVES_PATH
        self.meta: dict = {}
        self.entries = self._load(self.path) if self.path.is_file() else {}
        self.fallback: dict[tuple, tuple[MBEParams, float]] = {}
        for extra in also:
            self.fallback.update(self._load(Path(extra)))

    def _load(self, path: Path) -> dict[tuple, tuple[MBEParams, float]]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MBEError(f"{path}: not a readable MBE primitive file ({exc}).") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise MBEError(f"{path}: expected a {_FORMAT!r} JSON file.")
        if path == self.path:
            self.meta = doc.get("meta", {})
        out = {}
        for rec in doc.get("entries", []):
            if not isinstance(rec, dict) or "params" not in rec or "mse" not in rec:
                raise MBEError(f"{path}: an entry lacks its params or mse.")
            p = MBEParams.from_dict(rec["params"])
            out[_key(p.name, p.n_bases, p.timesteps, p.lo, p.hi)] = (p, float(rec["mse"]))
        return out

    def get(self, name: str, n_bases: int, timesteps: int, lo: float, hi: float) -> MBEParams | None:
        """The cached neuron, or ``None``."""
        key = _key(name, n_bases, timesteps, lo, hi)
        hit = self.entries.get(key) or self.fallback.get(key)
        return None if hit is None else hit[0]

    def put(self, params: MBEParams, mse: float) -> None:
        """Add or replace one fitted neuron."""
        self.entries[_key(params.name, params.n_bases, params.timesteps, params.lo, params.hi)] = (params, mse)

    def get_or_fit(self, name: str, n_bases: int, timesteps: int, lo: float, hi: float, seed: int = 0) -> MBEParams:
        """Load ``(name, N, T, lo, hi)`` from the cache, or fit it (seeded) and add it."""
        hit = self.get(name, n_bases, timesteps, lo, hi)
        if hit is None:
            params, mse = fit_nested(name, lo, hi, (n_bases,), timesteps, seed)[n_bases]
            self.put(params, mse)
            hit = params
        return hit

    def save(self, path: str | Path | None = None) -> None:
        """Write every entry, sorted by key, as JSON."""
        path = Path(path) if path is not None else self.path
        entries = [
            {"params": p.to_dict(), "n_bases": p.n_bases, "mse": m}
            for _, (p, m) in sorted(self.entries.items(), key=lambda kv: kv[0])
        ]
        doc = {"format": _FORMAT, "version": 1, "meta": self.meta, "entries": entries}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    """Fit the paper's primitives for ``N = 1, 2, 4, 8`` at ``T`` steps, write the cache, print the MSE table."""
    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.mbe_fit", description=main.__doc__)
    ap.add_argument("--out", type=Path, default=PRIMITIVES_PATH)
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=sorted(PRIMITIVES), help="primitives to fit (default: all)")
    args = ap.parse_args(argv)
    cache = PrimitiveCache(args.out)
    cache.meta = {
        "command": "python -m spikeforge.models.mbe_fit",
        "numpy": np.__version__,
        "seed": args.seed,
        "samples": 10_000,
    }
    print("| primitive | range | T | N = 1 | N = 2 | N = 4 | N = 8 |\n|---|---|---|---|---|---|---|")
    for name in args.only:
        t0 = time.time()
        lo, hi = PRIMITIVES[name][1]
        res = fit_nested(name, lo, hi, (1, 2, 4, 8), args.timesteps, args.seed)
        for params, mse in res.values():
            cache.put(params, mse)
        row = " | ".join(f"{res[n][1]:.2e}" for n in (1, 2, 4, 8))
        print(f"| {name} | [{lo:g}, {hi:g}] | {args.timesteps} | {row} |  ({time.time() - t0:.0f} s)", flush=True)
    cache.save(args.out)


if __name__ == "__main__":
    main()
