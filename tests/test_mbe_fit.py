"""Fitted MBE primitives: the shipped cache reaches the MSE bounds of docs/mbe.md, equals what the
shipped fitting command produces, and its integer LUT form keeps the accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikeforge.models.mbe import MBEError, mbe_apply_int, mbe_membrane_range, to_lut
from spikeforge.models.mbe_convert import VIT_CACHE_PATH
from spikeforge.models.mbe_fit import PRIMITIVES, PRIMITIVES_PATH, PrimitiveCache, fit_mse, fit_nested, fit_primitive

#: MSE bounds at T = 16 (docs/mbe.md); the paper reports about 1e-4 at N = 8.
BOUNDS = {
    ("gelu", 4): 2e-4,
    ("gelu", 8): 1e-4,
    ("exp2", 8): 1e-5,
    ("inv", 8): 1e-5,
    ("invsqrt", 8): 1e-5,
    ("identity", 8): 1e-8,
}


@pytest.fixture(scope="module")
def shipped():
    return PrimitiveCache()


def test_shipped_cache_covers_every_primitive_and_N(shipped):
    for name in PRIMITIVES:
        lo, hi = PRIMITIVES[name][1]
        for n in (1, 2, 4, 8):
            assert shipped.get(name, n, 16, lo, hi) is not None, (name, n)


def test_shipped_mse_is_reproduced_and_within_bounds(shipped):
    for (name, n, _t, _lo, _hi), (params, mse) in shipped.entries.items():
        assert fit_mse(params) == pytest.approx(mse, rel=1e-9, abs=1e-15)
        if (name, n) in BOUNDS:
            assert mse <= BOUNDS[(name, n)], (name, n, mse)
    for name in PRIMITIVES:
        lo, hi = PRIMITIVES[name][1]
        errs = [shipped.entries[(name, n, 16, lo, hi)][1] for n in (1, 2, 4, 8)]
        assert errs == sorted(errs, reverse=True), (name, errs)  # nested fits never get worse


def test_refitting_reproduces_the_shipped_parameters(shipped):
    """The N = 1 stage of the nested fit consumes the same random numbers whatever the largest N."""
    for name in ("exp2", "inv"):
        got = fit_nested(name, n_bases=(1,))[1][0]
        lo, hi = PRIMITIVES[name][1]
        assert got.to_dict() == shipped.get(name, 1, 16, lo, hi).to_dict()


def test_integer_lut_form_keeps_the_fit(shipped):
    for (name, n, _t, lo, hi), (params, mse) in shipped.entries.items():
        if n != 8 or name == "gelu":
            continue
        x = lo + (hi - lo) * (np.arange(10_000) + 0.5) / 10_000
        _, y = mbe_apply_int(x, to_lut(params))
        mse_int = float(np.mean((y - PRIMITIVES[name][0](x)) ** 2))
        assert mse_int <= 1.5 * mse + 1e-9, (name, mse_int, mse)


def test_paper_form_without_offsets_fits_exp2():
    res = fit_nested("exp2", n_bases=(2,), free_offsets=False, iters_per_basis=100, random_candidates=50)
    params, mse = res[2]
    assert np.all(params.offset == 0.0) and mse < 1e-3


def test_fit_primitive_returns_the_requested_neuron():
    p = fit_primitive("identity", 0.0, 1.0, n_bases=1, timesteps=6, iters_per_basis=10, random_candidates=5)
    assert p.n_bases == 1 and p.timesteps == 6
    assert fit_mse(p) < (2**-6) ** 2  # at least as good as 6-bit truncation
    p = fit_primitive("inv", timesteps=4, iters_per_basis=2, random_candidates=2)
    assert p.n_bases == PRIMITIVES["inv"][2] and (p.lo, p.hi) == PRIMITIVES["inv"][1]
    with pytest.raises(MBEError, match="no MBE primitive called 'tanh'"):
        fit_primitive("tanh")


@pytest.mark.parametrize(
    "args, match",
    [
        ({"name": "tanh"}, "no MBE primitive called 'tanh'"),
        ({"name": "exp2", "lo": 1.0, "hi": 0.0}, "lo < hi"),
        ({"name": "exp2", "n_bases": (0,)}, "N >= 1"),
        ({"name": "exp2", "timesteps": 0}, "timesteps >= 1"),
        ({"name": "exp2", "samples": 1}, "samples >= 2"),
        ({"name": "invsqrt", "lo": -1.0, "hi": 1.0}, "not finite"),
    ],
)
def test_bad_fit_requests_are_refused(args, match):
    with np.errstate(all="ignore"), pytest.raises(MBEError, match=match):
        fit_nested(**args)


def test_bad_cache_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MBEError, match="not a readable MBE primitive file"):
        PrimitiveCache(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(MBEError, match="expected a 'spikeforge-mbe-primitives'"):
        PrimitiveCache(bad)
    doc = json.loads(PRIMITIVES_PATH.read_text())
    del doc["entries"][0]["mse"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(MBEError, match="lacks its params or mse"):
        PrimitiveCache(bad)


def test_cache_saves_and_reloads(tmp_path, shipped):
    path = tmp_path / "c.json"
    c = PrimitiveCache(path, also=(PRIMITIVES_PATH,))
    assert c.get("exp2", 8, 16, 0.0, 1.0) is not None  # from the fallback file
    p = shipped.get("inv", 2, 16, 0.5, 1.0)
    c.put(p, 1.0)
    c.save()
    again = PrimitiveCache(path)
    assert list(again.entries) == [("inv", 2, 16, 0.5, 1.0)]
    assert again.get("inv", 2, 16, 0.5, 1.0).to_dict() == p.to_dict()


def test_membrane_of_every_shipped_fit_fits_in_in_bits_plus_two_signed_bits():
    """docs/mbe.md: U stays in [-2**(in_bits+1), 2**in_bits] for offsets in range and a <= 2 (hi - lo)."""
    caches = (PrimitiveCache(), PrimitiveCache(VIT_CACHE_PATH))
    for params, _ in [e for c in caches for e in c.entries.values()]:
        assert np.all(params.a <= 2 * (params.hi - params.lo))
        assert np.all((params.offset >= params.lo) & (params.offset <= params.hi))
        lut = to_lut(params)
        lo, hi = mbe_membrane_range(lut.quantize_input(np.linspace(params.lo, params.hi, 20_001)), lut)
        assert -(2 ** (lut.in_bits + 1)) <= lo and hi <= 2**lut.in_bits
