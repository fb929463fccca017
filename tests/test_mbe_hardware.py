"""MBE neurons as a hardware neuron model: graph, executor, mapping, simulator, conversion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import hw_of, widths
from spikeforge.mapping import compile
from spikeforge.mapping.pieces import MappingError
from spikeforge.models.errors import GraphError
from spikeforge.models.executor import run_snn
from spikeforge.models.graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    MBEPopulation,
    OutputPopulation,
    SNNGraph,
)
from spikeforge.models.graph_io import load_graph, save_graph
from spikeforge.models.mbe import halving_params, mbe_encode_int, to_lut
from spikeforge.sim import Simulator, simulate

MBE_CORE = {"neuron_models": ("if", "dif", "mbe")}


def mbe_pop(name, n, T, rng, bases=2, lo=-40, hi=40, bias=None):
    """Random but valid integer MBE units: decreasing positive thresholds, resets, signed intensities."""
    vth = np.sort(rng.integers(1, 30, (bases, T)), axis=1)[:, ::-1].copy()
    return MBEPopulation(
        name,
        (n,),
        vth=vth,
        reset=rng.integers(1, 30, (bases, T)),
        intensity=rng.integers(-5, 6, (bases, T)),
        offset=rng.integers(-10, 10, bases),
        bias=rng.integers(-3, 4, n) if bias is None else bias,
        x_lo=lo,
        x_hi=hi,
    )


def random_mbe_graph(rng, T, n_in, hidden, bases, identity=False):
    """in -> dense -> mbe (-> identity/dense -> mbe)... -> dense -> out."""
    pops = [InputPopulation("in", (n_in,), value_bits=3)]
    projs = []
    prev, prev_n = "in", n_in
    for i, n in enumerate(hidden):
        name = f"m{i}"
        pops.append(mbe_pop(name, n, T, rng, bases))
        if identity and i > 0 and n == prev_n:
            projs.append(IdentityProjection(prev, name, weight=int(rng.integers(-3, 4))))
        else:
            projs.append(DenseProjection(prev, name, weight=rng.integers(-3, 4, (n, prev_n))))
        prev, prev_n = name, n
    pops.append(OutputPopulation("out", (3,), bias=rng.integers(-5, 5, 3)))
    projs.append(DenseProjection(prev, "out", weight=rng.integers(-3, 4, (3, prev_n))))
    return SNNGraph(tuple(pops), tuple(projs), timesteps=T)


def assert_sim_equals_executor(program, x):
    """Rasters, logits, basis spikes and clamps equal the executor's, with 64-bit state words and,
    where the program's bounds allow them, 32-bit ones (the MBE basis membranes and rings stay 64)."""
    ref = run_snn(program.graph, x)
    mbe = [p.name for p in program.graph.populations if p.kind == "mbe"]
    for width in widths(program):
        sim = Simulator(program, width=width)
        for i in range(len(x)):
            run = sim.run(x[i], record=True)
            for name, raster in run.rasters.items():
                np.testing.assert_array_equal(
                    raster, ref.rasters[name][:, i], err_msg=f"{name}, sample {i}, width {width}"
                )
            np.testing.assert_array_equal(run.logits, ref.logits[i])
        spikes = sum(int(ref.counts[name].sum()) for name in mbe)
        assert sim.totals().spikes == spikes  # basis spikes, counted by both
        clipped = sum(int(ref.clipped[name].sum()) for name in mbe)
        assert int(sim.piece_clipped.sum()) == clipped
    return sim, ref


# --------------------------------------------------------------------------- the neuron
@pytest.mark.parametrize("T", [4, 8, 16])
def test_halving_units_emit_the_binary_digits_of_their_input(T):
    """Input x through an identity weight 1 is integrated T times; tables scaled by T give
    exactly the spikes of the integer MBE neuron of models.mbe, whose halving kernels are the
    first T binary digits of x."""
    lut = to_lut(halving_params(0.0, 1.0, timesteps=T), in_bits=T)
    x = np.arange(1 << min(T, 8)) * (1 << max(0, T - 8))  # spans 0 .. 2**T - 1
    x = x[x < (1 << 16)]
    pop = MBEPopulation(
        "m",
        (len(x),),
        vth=lut.vth * T,
        reset=lut.reset * T,
        intensity=lut.intensity,
        offset=lut.offset * T,
        bias=np.zeros(len(x), int),
        x_lo=0,
        x_hi=T * ((1 << T) - 1),
    )
    graph = SNNGraph(
        (InputPopulation("in", (len(x),), value_bits=16), pop, OutputPopulation("out", (1,), bias=np.zeros(1, int))),
        (IdentityProjection("in", "m"), DenseProjection("m", "out", np.ones((1, len(x)), int))),
        timesteps=T,
        v_bits=48,
    )
    run = run_snn(graph, x[None])
    spikes = mbe_encode_int(x, lut)[:, 0, :]  # (values, T)
    digits = (x[:, None] >> (T - 1 - np.arange(T))) & 1
    np.testing.assert_array_equal(spikes, digits)
    out = graph.schedule()["m"].out_start
    payload = run.rasters["m"][out : out + T, 0].T
    np.testing.assert_array_equal(payload, np.where(spikes, lut.intensity[0], 0))
    assert run.counts["m"][0].tolist() == spikes.sum(axis=1).tolist()


def test_out_of_range_inputs_are_clamped_and_counted():
    rng = np.random.default_rng(1)
    pop = mbe_pop("m", 4, 4, rng, lo=0, hi=10, bias=np.zeros(4, int))
    graph = SNNGraph(
        (InputPopulation("in", (4,), value_bits=4), pop, OutputPopulation("out", (1,), bias=np.zeros(1, int))),
        (IdentityProjection("in", "m"), DenseProjection("m", "out", np.ones((1, 4), int))),
        timesteps=4,
    )
    x = np.array([[0, 1, 2, 15]])  # X = 4x: 0, 4, 8 in range; 60 above x_hi = 10
    assert run_snn(graph, x).clipped["m"].tolist() == [1]
    program = compile(graph, hw_of(1, 1, **MBE_CORE))
    result = simulate(program, x, progress=False)
    assert result.per_population["m"]["clipped"] == 1
    assert result.exactness["exact"]


# --------------------------------------------------------------------------- simulator == executor
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 6),
    hidden=st.lists(st.integers(1, 24), min_size=1, max_size=3),
    bases=st.integers(1, 4),
    neurons=st.sampled_from([32, 64, 256]),
    lanes=st.sampled_from([1, 4, 16]),
    axons=st.sampled_from([8, 256]),
    shape=st.sampled_from([(1, 1), (2, 2), (4, 4)]),
    identity=st.booleans(),
)
def test_random_mbe_graphs_simulate_exactly(seed, T, hidden, bases, neurons, lanes, axons, shape, identity):
    rng = np.random.default_rng(seed)
    graph = random_mbe_graph(rng, T, 6, hidden, bases, identity)
    while (bases + 1) * lanes > neurons:  # X and every basis need a block of whole lane groups
        lanes //= 2
    hw = hw_of(*shape, neurons=neurons, lanes=lanes, axons=axons, **MBE_CORE)
    program = compile(graph, hw)
    x = rng.integers(0, 8, (2, 6))
    assert_sim_equals_executor(program, x)


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (16, 16)])
def test_the_mbe_mlp_simulates_exactly_on_every_array(mbe_mlp8, digits, shape):
    program = compile(mbe_mlp8, hw_of(*shape, **MBE_CORE))
    sim, ref = assert_sim_equals_executor(program, digits.x_test[:3])
    assert sim.totals().spikes > 500  # the units fire: not a comparison of silence


def test_fan_in_split_into_partial_pieces(digits, mbe_mlp8):
    program = compile(mbe_mlp8, hw_of(2, 2, axons=16, **MBE_CORE))
    assert any(p.kind == "partial" for p in program.pieces)
    assert_sim_equals_executor(program, digits.x_test[:2])


# --------------------------------------------------------------------------- cycles and memory
def test_phase_f_cycles_follow_the_contract():
    """One MBE piece of n units, N bases: ceil(n/lanes) per input step, plus N ceil(n/lanes) per
    output step, both at the first output step (architecture section 4.5)."""
    rng = np.random.default_rng(3)
    n, N, T, lanes = 10, 3, 4, 4
    graph = SNNGraph(
        (
            InputPopulation("in", (2,), value_bits=3),
            mbe_pop("m", n, T, rng, bases=N),
            OutputPopulation("out", (1,), bias=np.zeros(1, int)),
        ),
        (DenseProjection("in", "m", rng.integers(-2, 3, (n, 2))), DenseProjection("m", "out", np.ones((1, n), int))),
        timesteps=T,
    )
    program = compile(graph, hw_of(1, 1, lanes=lanes, neurons=64, **MBE_CORE))
    piece = next(p for p in program.pieces if p.kind == "mbe")
    sim = Simulator(program, trace=True)
    run = sim.run(np.array([3, 5]))
    w = graph.schedule()["m"]
    unit, basis = -(-n // lanes), N * -(-n // lanes)  # one pass of ceil(n/lanes) per basis
    for t, tr in enumerate(run.trace):
        k = t - w.out_start
        expect = 0
        if w.in_start <= t < w.in_start + T:
            expect += unit
        if 0 <= k < T:
            expect += basis
        assert tr.fire_cycles[piece.id] == expect, f"step {t}"


def test_mbe_pieces_hold_units_tables_and_basis_membranes():
    rng = np.random.default_rng(4)
    graph = random_mbe_graph(rng, 16, 4, [200], bases=4)
    program = compile(graph, hw_of(1, 1, neurons=256, **MBE_CORE))
    mbe = [p for p in program.pieces if p.kind == "mbe"]
    assert max(p.n for p in mbe) == (256 // 16 // 5) * 16  # N + 1 blocks of whole 16-lane groups
    assert all(program.state_words(p) == 5 * -(-p.n // 16) * 16 <= 256 for p in mbe)
    for p in mbe:
        words = program.param_words(p)
        assert words == p.n + 4 * 16 + 4 + 1 <= 256
        image = program.images(p.id)["params"]
        assert len(image.fields) == words
        pop = graph.population(p.population)
        np.testing.assert_array_equal(
            image.fields[p.n : p.n + 64], np.stack([pop.vth, pop.reset, pop.intensity], -1).reshape(-1, 3)
        )
        assert image.fields[-1].tolist() == [pop.x_lo, pop.x_hi, 0]


# --------------------------------------------------------------------------- bad input
def test_bad_mbe_populations_are_refused():
    rng = np.random.default_rng(5)
    good = mbe_pop("m", 3, 4, rng)
    base = dict(vth=good.vth, reset=good.reset, intensity=good.intensity, offset=good.offset, bias=good.bias)
    with pytest.raises(GraphError, match="differ in shape"):
        MBEPopulation("m", (3,), **(base | {"reset": good.reset[:, :2]}), x_lo=0, x_hi=1)
    with pytest.raises(GraphError, match="offset"):
        MBEPopulation("m", (3,), **(base | {"offset": np.zeros(5, int)}), x_lo=0, x_hi=1)
    with pytest.raises(GraphError, match="x_lo = 5 is above x_hi = 1"):
        MBEPopulation("m", (3,), **base, x_lo=5, x_hi=1)
    pops = (InputPopulation("in", (3,)), good, OutputPopulation("out", (1,), bias=np.zeros(1, int)))
    projs = (IdentityProjection("in", "m"), DenseProjection("m", "out", np.ones((1, 3), int)))
    with pytest.raises(GraphError, match="tables for T = 4 steps; the graph runs T = 5"):
        SNNGraph(pops, projs, timesteps=5)
    wide = MBEPopulation("m", (3,), **base, x_lo=-(1 << 30), x_hi=1 << 30)
    with pytest.raises(GraphError, match="does not fit in 24 signed bits"):
        SNNGraph((pops[0], wide, pops[2]), projs, timesteps=4)


def test_mapping_refusals_name_the_fix():
    rng = np.random.default_rng(6)
    graph = random_mbe_graph(rng, 4, 4, [8], bases=2)
    with pytest.raises(MappingError, match="lacks 'mbe'"):
        compile(graph, hw_of(1, 1))
    big = random_mbe_graph(rng, 16, 4, [8], bases=4)
    with pytest.raises(MappingError, match="Raise \\[core\\] neurons"):
        compile(big, hw_of(1, 1, neurons=64, lanes=4, **MBE_CORE))
    conv = SNNGraph(
        (
            InputPopulation("in", (1, 4, 4)),
            MBEPopulation(
                "m",
                (2, 4, 4),
                **{k: getattr(mbe_pop("x", 32, 4, rng), k) for k in ("vth", "reset", "intensity", "offset", "bias")},
                x_lo=-9,
                x_hi=9,
            ),
            OutputPopulation("out", (1,), bias=np.zeros(1, int)),
        ),
        (
            ConvProjection("in", "m", np.ones((2, 1, 3, 3), int), padding=1),
            DenseProjection("m", "out", np.ones((1, 32), int)),
        ),
        timesteps=4,
    )
    with pytest.raises(MappingError, match="fed by a convolution"):
        compile(conv, hw_of(1, 1, **MBE_CORE))


def test_rtl_builds_mbe_pieces_and_nir_refuses_them_with_a_sentence():
    from spikeforge.mapping.images import PIECE_CODES
    from spikeforge.models.nir_io import NirError, export_nir
    from spikeforge.rtl.piece import check_hardware, piece_init

    check_hardware(hw_of(1, 1, **MBE_CORE))  # the RTL builds MBE units (docs/rtl.md)
    graph = random_mbe_graph(np.random.default_rng(7), 4, 4, [8], bases=2)
    program = compile(graph, hw_of(1, 2, neurons=32, lanes=4, **MBE_CORE))
    mbe = next(p for p in program.pieces if p.kind == "mbe")
    init = piece_init(program, mbe.id)
    assert (init.kind, init.bases, len(init.params)) == (PIECE_CODES["mbe"], 2, mbe.n + 2 * 4 + 2 + 1)
    pytest.importorskip("nir")
    with pytest.raises(NirError, match="MBE neurons"):
        export_nir(graph)


# --------------------------------------------------------------------------- conversion
def test_graph_file_round_trip(mbe_mlp8, tmp_path):
    save_graph(mbe_mlp8, tmp_path / "g.npz")
    back = load_graph(tmp_path / "g.npz")
    for a, b in zip(mbe_mlp8.populations, back.populations):
        assert a.kind == b.kind
        if a.kind == "mbe":
            for key in ("vth", "reset", "intensity", "offset", "bias"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            assert (a.x_lo, a.x_hi) == (b.x_lo, b.x_hi)


def test_converted_mlp_is_within_two_points_of_its_ann_at_t16(digits):
    from spikeforge.models.mbe_graph import mlp_to_mbe_graph
    from spikeforge.models.mlp import load_mlp, mlp_forward

    graph = mlp_to_mbe_graph(timesteps=16, fit=False)
    run = run_snn(graph, digits.x_test, record=False)
    snn = float(np.mean(run.logits.argmax(1) == digits.y_test))
    ann = float(np.mean(mlp_forward(load_mlp(), digits.x_test).argmax(1) == digits.y_test))
    assert ann > 0.95
    assert snn >= ann - 0.02
    assert sum(int(c.sum()) for c in run.clipped.values()) == 0


def test_a_shipped_mlp_gelu_fit_is_reproduced_exactly():
    from spikeforge.models.mbe_fit import PrimitiveCache, fit_nested
    from spikeforge.models.mbe_graph import MLP_CACHE_PATH

    cache = PrimitiveCache(MLP_CACHE_PATH)
    (name, n, T, lo, hi), (params, mse) = sorted(cache.entries.items())[0]
    refit, refit_mse = fit_nested(name, lo, hi, (n,), T, 0)[n]
    assert refit.to_dict() == params.to_dict()
    assert refit_mse == mse


def test_uncached_fits_are_refused_without_fitting(digits):
    from spikeforge.models.mbe import MBEError
    from spikeforge.models.mbe_graph import mlp_to_mbe_graph

    with pytest.raises(MBEError, match="no cached GELU fit with N = 4, T = 5"):
        mlp_to_mbe_graph(timesteps=5, fit=False)


def test_bad_mlp_files_are_refused(tmp_path):
    from spikeforge.models.errors import FileFormatError
    from spikeforge.models.mlp import MLPCheckpoint, MLPConfig, load_mlp, save_mlp

    ckpt = load_mlp()
    save_mlp(tmp_path / "ok.npz", ckpt)
    assert load_mlp(tmp_path / "ok.npz").config == ckpt.config
    bad = MLPCheckpoint(MLPConfig(hidden=(96, 48)), (ckpt.weights[0][:, :10], *ckpt.weights[1:]), ckpt.biases)
    save_mlp(tmp_path / "bad.npz", bad)
    with pytest.raises(FileFormatError, match="parameter w0 has shape \\(96, 10\\), expected \\(96, 64\\)"):
        load_mlp(tmp_path / "bad.npz")


@pytest.mark.slow
def test_retraining_reproduces_the_bundled_mlp():
    pytest.importorskip("torch")
    from spikeforge.models.mlp import load_mlp, train_mlp

    shipped, trained = load_mlp(), train_mlp()
    # the same seeds, batches and steps; bit-equal on the machine that trained the bundled weights,
    # but MKL and oneDNN pick their float32 kernels by CPU (vendor, AVX2 or AVX-512), which sum in
    # another order: on an AMD EPYC with AVX-512 every weight matched within 3.8e-6
    for a, b in zip(shipped.weights + shipped.biases, trained.weights + trained.biases):
        np.testing.assert_allclose(b.astype(np.float32).astype(np.float64), a, rtol=0, atol=1e-3)
    assert trained.metrics["test_accuracy"] == shipped.metrics["test_accuracy"]


def test_cli_simulates_the_mbe_model(tmp_path, capsys):
    from spikeforge.cli import main

    assert (
        main(
            [
                "simulate",
                "--model",
                "tiny-digits-mlp",
                "--timesteps",
                "8",
                "--hardware",
                "configs/array-8x8-mbe.toml",
                "--samples",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "float ANN" in out and "3/3 logit vectors equal" in out
    import json

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["per_population"]["gelu0"]["kind"] == "mbe"
    assert result["per_population"]["gelu0"]["bases"] == 4
    assert result["accuracy"]["float_qat"] is None


def test_demo_runs_the_mbe_mlp_on_the_hardware(tmp_path):
    from spikeforge.demo import format_report, run_demo

    report = run_demo("tiny-digits-mlp", out=tmp_path, timesteps=8, samples=20, progress=False)
    assert report["neuron"] == "mbe" and report["exactness"]["exact"]
    assert report["simulation"]["per_population"]["gelu0"]["kind"] == "mbe"
    assert report["cycles_per_inference"] > 0 and report["energy_pj"]["total"] > 0
    assert (tmp_path / "report.json").is_file() and len(report["plots"]) == 5
    assert "simulated == functional executor: yes (20/20" in format_report(report)
    from spikeforge.models.errors import SpikeForgeError

    with pytest.raises(SpikeForgeError, match="--neuron if applies to CSDformer models"):
        run_demo("tiny-digits-mlp", neuron="if", samples=2, progress=False)
