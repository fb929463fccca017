"""NIR interoperability: a real client (snnTorch's exporter and simulator), round trips, bad files.

The snnTorch client runs in its own venv (``.nir-venv``, made by scripts/test.sh: CPU torch
2.13.0, snntorch 0.9.4, nir 1.0.4, nirtorch 1.0); with ``SPIKEFORGE_REQUIRE_PEERS`` set (CI) a
missing one fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.models import load_graph, run_snn
from spikeforge.models.graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    NeuronPopulation,
    OutputPopulation,
    SNNGraph,
)
from spikeforge.models.nir_io import NirError, export_nir, import_nir

nir = pytest.importorskip("nir") if not os.environ.get("SPIKEFORGE_REQUIRE_PEERS") else __import__("nir")

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "tests" / "clients" / "snntorch_nir_client.py"
CLIENT_PYTHON = Path(os.environ.get("SNNTORCH_PYTHON", ROOT / ".nir-venv" / "bin" / "python"))
if os.environ.get("SPIKEFORGE_REQUIRE_PEERS") and not CLIENT_PYTHON.exists():
    raise RuntimeError(f"snnTorch interpreter {CLIENT_PYTHON} missing but SPIKEFORGE_REQUIRE_PEERS is set.")
needs_client = pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason=f"{CLIENT_PYTHON} missing (scripts/test.sh)")


def if_network(seed: int = 0, T: int = 5) -> SNNGraph:
    """in (1x6x6) -conv-> c1 -dense + identity-> h -dense-> d -dense-> out; IF neurons, v0 = -1."""
    rng = np.random.default_rng(seed)

    def neurons(name, shape, per_channel_bias=False):
        n = int(np.prod(shape))
        bias = np.repeat(rng.integers(-1, 2, shape[0]), n // shape[0]) if per_channel_bias else rng.integers(-2, 3, n)
        return NeuronPopulation(name, shape, threshold=rng.integers(3, 9, n), bias=bias, v0=-np.ones(n, np.int64))

    pops = (
        InputPopulation("in", (1, 6, 6), value_bits=4),
        neurons("c1", (2, 6, 6), per_channel_bias=True),
        neurons("h", (72,)),
        neurons("d", (10,)),
        OutputPopulation("out", (10,), bias=rng.integers(-2, 3, 10)),
    )
    projs = (
        ConvProjection("in", "c1", rng.integers(-3, 4, (2, 1, 3, 3)), stride=1, padding=1),
        DenseProjection("c1", "h", rng.integers(-3, 4, (72, 72))),
        IdentityProjection("c1", "h", weight=2),
        DenseProjection("h", "d", rng.integers(-3, 4, (10, 72))),
        DenseProjection("d", "out", rng.integers(-3, 4, (10, 10))),
    )
    return SNNGraph(pops, projs, timesteps=T)


def same_graph(a: SNNGraph, b: SNNGraph) -> None:
    assert (a.timesteps, a.weight_bits, a.v_bits) == (b.timesteps, b.weight_bits, b.v_bits)
    assert [(p.name, p.kind, p.shape) for p in a.populations] == [(p.name, p.kind, p.shape) for p in b.populations]
    for p, q in zip(a.populations, b.populations):
        for key in ("threshold", "bias", "v0", "value_bits"):
            if hasattr(p, key):
                assert np.array_equal(getattr(p, key), getattr(q, key)), (p.name, key)

    def key(q):
        data = {"dense": "weight", "conv": "kernel", "identity": "weight"}[q.kind]
        return (q.src, q.dst, q.kind, np.asarray(getattr(q, data)).tobytes(), getattr(q, "stride", 0))

    assert sorted(map(key, a.projections)) == sorted(map(key, b.projections))


@needs_client
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snntorch_export_imports_and_spikes_like_snntorch(tmp_path, seed):
    T = 8
    subprocess.run([str(CLIENT_PYTHON), str(CLIENT), str(tmp_path), str(seed), str(T)], check=True, capture_output=True)
    imported = import_nir(tmp_path / "net.nir", timesteps=T, value_bits=3)
    assert imported.exact, imported.rounding  # integer weights: the rule is lossless
    ref = np.load(tmp_path / "spikes.npz", allow_pickle=False)
    x = ref["x"].reshape(imported.graph.input.shape).astype(np.int64)
    run = run_snn(imported.graph, x[None])
    sched = imported.graph.schedule()
    layers = [k for k in ref.files if k != "x"]
    assert len(layers) == 2
    total = 0
    for name in layers:  # every Leaky layer, step for step, after our one-step-per-hop latency
        ours = run.rasters[name][sched[name].out_start : sched[name].out_start + T, 0]
        assert np.array_equal(ours, ref[name]), name
        total += int(ref[name].sum())
    assert total > 0  # the comparison saw spikes


def test_if_network_round_trips_through_nir(tmp_path):
    graph = if_network()
    export_nir(graph, tmp_path / "net.nir")
    imported = import_nir(tmp_path / "net.nir")
    assert imported.exact
    same_graph(graph, imported.graph)
    x = np.random.default_rng(0).integers(0, 16, (3, 1, 6, 6))
    assert np.array_equal(run_snn(graph, x).logits, run_snn(imported.graph, x).logits)


def test_an_imported_network_maps_and_simulates_on_the_digits(tmp_path, capsys):
    rng = np.random.default_rng(4)
    nodes = {
        "in": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "conv": nir.Conv2d(
            input_shape=(8, 8),
            weight=rng.integers(-2, 3, (2, 1, 3, 3)).astype(float),
            stride=1,
            padding=1,
            dilation=1,
            groups=1,
            bias=np.array([0.0, 1.0]),
        ),  # fmt: skip
        "if1": nir.IF(r=np.ones((2, 8, 8)), v_threshold=np.full((2, 8, 8), 20.0)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 8, 8])}, start_dim=0),
        "fc": nir.Affine(weight=rng.integers(-2, 3, (10, 128)).astype(float), bias=np.zeros(10)),
        "out": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("in", "conv"), ("conv", "if1"), ("if1", "flat"), ("flat", "fc"), ("fc", "out")]
    nir.write(str(tmp_path / "conv.nir"), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    args = ["import-nir", str(tmp_path / "conv.nir"), "--out", str(tmp_path / "g.npz"), "--timesteps", "4"]
    assert main([*args, "--value-bits", "5"]) == 0
    assert "exact" in capsys.readouterr().out
    graph = load_graph(tmp_path / "g.npz")
    assert [q.kind for q in graph.projections] == ["conv", "dense"]
    from spikeforge.workflow import simulate_model

    result = simulate_model(tmp_path / "g.npz", "configs/array-4x4.toml", samples=3, progress=False)
    assert result.exactness["exact"] and result.spikes_per_inference > 0


def test_rounding_is_reported_not_hidden():
    nodes = {
        "in": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.array([[0.3, -0.7, 0.1], [0.25, 0.5, -0.125]]), bias=np.zeros(2)),
        "lif": nir.IF(r=np.ones(2), v_threshold=np.array([1.0, 1.0])),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")], type_check=False)
    imported = import_nir(g, timesteps=4, weight_bits=8)
    # no power of two makes 0.3 an integer: the largest scale within 8-bit weights is 2^7
    # (0.7 x 128 = 89.6 fits, 0.7 x 256 does not), so the rounding error is at most 2^-8
    assert not imported.exact and 0 < imported.rounding["lif"] <= 2.0**-8
    assert imported.graph.population("lif").threshold.tolist() == [128, 128]


# bad input -----------------------------------------------------------------------------


def test_unsupported_node_is_named(tmp_path):
    nodes = {
        "in": nir.Input(input_type={"input": np.array([2])}),
        "fc": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
        "cuba": nir.CubaLIF(
            tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)
        ),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "cuba"), ("cuba", "out")], type_check=False)
    with pytest.raises(NirError, match="node 'cuba' has type CubaLIF, which SpikeForge does not import"):
        import_nir(g, timesteps=4)


def test_leaky_neurons_and_other_resets_are_refused():
    def graph(neuron):
        nodes = {
            "in": nir.Input(input_type={"input": np.array([2])}),
            "fc": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
            "n": neuron,
            "out": nir.Output(output_type={"output": np.array([2])}),
        }
        return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "n"), ("n", "out")], type_check=False)

    lif = nir.LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(NirError, match=r"node 'n' \(LIF\) leaks 0.1 of its membrane per step"):
        import_nir(graph(lif), timesteps=4)
    reset = nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.full(2, -1.0))
    with pytest.raises(NirError, match="reset by subtracting the threshold"):
        import_nir(graph(reset), timesteps=4)
    with pytest.raises(NirError, match="give the number of steps T"):
        import_nir(graph(nir.IF(r=np.ones(2), v_threshold=np.ones(2))))


def test_inconsistent_shapes_are_named():
    nodes = {
        "in": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
        "n": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "n"), ("n", "out")], type_check=False)
    with pytest.raises(NirError, match=r"node 'fc' \(Affine\) has weights \(2, 4\) but receives 3 values"):
        import_nir(g, timesteps=4)


def test_files_that_are_not_nir_or_are_truncated(tmp_path, capsys):
    (tmp_path / "text.nir").write_text("hello")
    with pytest.raises(NirError, match="not a NIR file"):
        import_nir(tmp_path / "text.nir", timesteps=4)
    export_nir(if_network(), tmp_path / "ok.nir")
    data = (tmp_path / "ok.nir").read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[: len(data) // 2])
    with pytest.raises(NirError, match="cannot be read as a NIR graph"):
        import_nir(tmp_path / "cut.nir", timesteps=4)
    assert main(["import-nir", str(tmp_path / "missing.nir"), "--out", str(tmp_path / "g.npz")]) == 2
    assert "no such NIR file" in capsys.readouterr().err


def test_export_names_what_nir_cannot_express(tmp_path, tiny_graph, capsys):
    with pytest.raises(NirError, match=r"NIR cannot express \d+ populations: 'tok.0' \(v0 != -1\); 'tok.0.pool' \(max"):
        export_nir(tiny_graph, tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()
    assert main(["export-nir", "tiny-digits", "--out", str(tmp_path / "t.nir")]) == 2
    err = capsys.readouterr().err
    assert "max-pool" in err and "fed by a product projection" in err
    export_path = tmp_path / "if.nir"
    from spikeforge.models import save_graph

    save_graph(if_network(), tmp_path / "if.npz")
    assert main(["export-nir", str(tmp_path / "if.npz"), "--out", str(export_path)]) == 0
    assert export_path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
