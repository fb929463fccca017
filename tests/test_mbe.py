"""MBE neuron: halving kernels are exact T-bit encoders (float and integer forms), the integer LUT
form tracks the float form, clipping is counted, and bad parameters are refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.models.mbe import (
    MBEError,
    MBELog,
    MBEParams,
    MBERangeWarning,
    halving_params,
    mbe_apply,
    mbe_apply_int,
    mbe_decode,
    mbe_encode,
    mbe_encode_int,
    mbe_init_int,
    mbe_step_int,
    to_lut,
)


def binary_digits(x: int, bits: int) -> list[bool]:
    """The ``bits`` binary digits of ``0 <= x < 2**bits``, most significant first."""
    return [bool((x >> (bits - 1 - t)) & 1) for t in range(bits)]


@given(
    T=st.integers(1, 24),
    data=st.data(),
    lo=st.integers(-8, 8),
    width_log2=st.integers(-3, 3),
    sub=st.integers(0, 255),
)
def test_float_halving_kernels_give_the_first_T_binary_digits(T, data, lo, width_log2, sub):
    code = data.draw(st.integers(0, 2**T - 1))
    width = 2.0**width_log2
    x = lo + width * (code + sub / 256) / 2**T  # exact in binary floating point
    p = halving_params(lo, lo + width, T)
    spikes = mbe_encode(np.array([x]), p)[0, 0]
    assert spikes.tolist() == binary_digits(code, T)
    # Decoding truncates x to T digits of the range.
    assert mbe_decode(spikes[None, None], p)[0] == lo + width * code / 2**T


@given(T=st.integers(1, 30), guard=st.integers(0, 8), data=st.data())
def test_integer_halving_kernels_give_the_top_T_bits_of_the_input_code(T, guard, data):
    X = data.draw(st.integers(0, 2 ** (T + guard) - 1))
    lut = to_lut(halving_params(0.0, 1.0, T), in_bits=T + guard)
    assert lut.vth[0].tolist() == [2 ** (T + guard - 1 - t) for t in range(T)]
    assert lut.reset[0].tolist() == lut.vth[0].tolist()
    spikes = mbe_encode_int(np.array([X], dtype=np.int64), lut)[0, 0]
    assert spikes.tolist() == binary_digits(X >> guard, T)


def test_integer_form_has_no_multiplier_and_tracks_the_float_form():
    """Random decays: the integer LUT neuron's output is within a few LSB of the float neuron's,
    except where a threshold rounding flips a spike; flips are rare and bounded in count."""
    rng = np.random.default_rng(1)
    p = MBEParams(
        name="random",
        lo=-2.0,
        hi=3.0,
        timesteps=16,
        a=rng.uniform(0.5, 4, 4),
        g_vth=rng.uniform(0.4, 0.95, 4),
        g_r=rng.uniform(0.4, 0.95, 4),
        g_d=rng.uniform(0.4, 0.95, 4),
        w=rng.normal(0, 1, 4),
        offset=rng.uniform(-2, 1, 4),
        bias=0.25,
    )
    x = rng.uniform(-2, 3, 20_000)
    lut = to_lut(p, in_bits=24, out_frac_bits=24)
    for table in (lut.vth, lut.reset, lut.intensity, lut.offset):
        assert table.dtype == np.int64
    acc, y_int = mbe_apply_int(x, lut)
    assert acc.dtype == np.int64
    s_float = mbe_encode(x, p)
    s_int = mbe_encode_int(lut.quantize_input(x), lut)
    same = (s_float == s_int).all(axis=(-2, -1))
    assert same.mean() > 0.999
    # Where the spikes agree, only the intensity rounding differs: |error| <= K / 2 LSB.
    k = p.n_bases * p.timesteps
    np.testing.assert_array_less(np.abs(y_int - mbe_apply(x, p))[same], k / 2 / 2**24 + 1e-12)


def test_per_step_kernel_drives_the_same_neuron_step_by_step():
    """A time-stepped executor calling mbe_step_int gets the spikes of mbe_encode_int, and the
    accumulated output DI[:, t] of each step sums to mbe_apply_int's accumulator."""
    rng = np.random.default_rng(2)
    p = MBEParams(
        "r",
        0.0,
        4.0,
        12,
        rng.uniform(0.5, 4, 3),
        [0.6, 0.7, 0.5],
        [0.5, 0.8, 0.6],
        [0.5, 0.9, 0.7],
        rng.normal(0, 1, 3),
        [0.0, 1.0, 2.0],
        0.5,
    )
    lut = to_lut(p)
    x = rng.uniform(0, 4, 500)
    xq = lut.quantize_input(x)
    u = mbe_init_int(xq, lut)
    acc = np.full(x.shape, lut.bias, dtype=np.int64)
    steps = []
    for t in range(12):
        s = mbe_step_int(u, t, lut)
        acc += np.where(s, lut.intensity[:, t], 0).sum(-1)
        steps.append(s)
    np.testing.assert_array_equal(np.stack(steps, -1), mbe_encode_int(xq, lut))
    np.testing.assert_array_equal(acc, mbe_apply_int(x, lut)[0])
    with pytest.raises(MBEError, match="step 12 is outside"):
        mbe_step_int(u, 12, lut)


def test_clipped_inputs_are_counted_per_site_and_warned_without_a_log():
    p = halving_params(0.0, 1.0, 8)
    x = np.array([-0.5, 0.0, 0.3, 1.0, 1.5, 2.0])
    log = MBELog()
    y = mbe_apply(x, p, log, site="here")
    mbe_apply(x[:2], p, log, site="here")
    assert log.clipped == {"here": 4} and log.total == {"here": 8}
    rep = log.report()["here"]
    assert rep["clipped"] == 4 and rep["clipped_fraction"] == 0.5
    assert 0 < rep["firing_rate"] <= 1 and rep["spikes"] == log.spikes["here"]
    assert log.n_clipped == 4
    # Clipped to the range ends: below gives lo, above gives the all-ones code.
    assert y[0] == 0.0 and y[-1] == y[-2] == y[3] == 1 - 2**-8
    with pytest.warns(MBERangeWarning, match="3 of 6 inputs"):
        mbe_apply(x, p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mbe_apply(np.array([0.0, 0.5, 1.0]), p)  # nothing outside: no warning
    lut = to_lut(p)
    log = MBELog()
    mbe_apply_int(x, lut, log, site="int")
    assert log.clipped == {"int": 3}


def test_rescaled_identity_gives_the_same_spikes():
    p = halving_params(0.0, 1.0, 12)
    q = p.rescaled(-4.0, 12.0)
    u = np.linspace(0, 1, 1001)
    assert (mbe_encode(u, p) == mbe_encode(-4.0 + 16.0 * u, q)).all()
    np.testing.assert_allclose(mbe_apply(-4.0 + 16.0 * u, q), -4.0 + 16.0 * mbe_apply(u, p), atol=1e-12)


def test_params_round_trip_through_dict():
    p = halving_params(-1.0, 3.0, 10)
    q = MBEParams.from_dict(p.to_dict())
    assert q.to_dict() == p.to_dict()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lo": 1.0, "hi": 1.0}, "lo < hi"),
        ({"hi": float("inf")}, "lo < hi"),
        ({"timesteps": 0}, "timesteps >= 1"),
        ({"a": []}, "at least one basis"),
        ({"w": [1.0, 2.0]}, "has 2 values but the neuron has 1 bases"),
        ({"g_r": [0.0]}, "decay factors g > 0"),
        ({"offset": [float("nan")]}, "non-finite"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match):
    base = halving_params(0.0, 1.0, 4).to_dict()
    base.update(kwargs)
    with pytest.raises(MBEError, match=match):
        MBEParams.from_dict(base)


def test_bad_dict_and_integer_inputs_are_refused():
    with pytest.raises(MBEError, match="incomplete or malformed"):
        MBEParams.from_dict({"name": "x"})
    lut = to_lut(halving_params(0.0, 1.0, 4))
    with pytest.raises(MBEError, match="integer inputs"):
        mbe_encode_int(np.array([0.5]), lut)
    with pytest.raises(MBEError, match="in_bits"):
        to_lut(halving_params(0.0, 1.0, 4), in_bits=0)
