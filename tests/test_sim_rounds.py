"""``rounds`` mode's untraced paths (one Numba call per inference, ``kernels.run_rounds``, for dense
rows only; the same kernels called step by step otherwise) against the traced event-list path, on
random graphs and at both state widths: every count, cycle, raster, membrane and per-core figure
must be equal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import hw_of, random_checkpoint, small_config, widths
from spikeforge.mapping import compile
from spikeforge.models import convert
from spikeforge.models.errors import GraphError
from spikeforge.models.graph import DenseProjection, InputPopulation, NeuronPopulation, OutputPopulation, SNNGraph
from spikeforge.sim import Simulator
from spikeforge.sim.lowering import aligned


def dense_graph(rng, n_in, n_h, n_h2, timesteps, value_bits, v_bits=24):
    """in -> h (IF) -> h2 (IF, narrow: short rows) -> out, random signed weights and thresholds."""

    def layer(name, n):
        th, bias = rng.integers(1, 40, n), rng.integers(-2, 3, n)
        return NeuronPopulation(name, (n,), threshold=th, bias=bias, v0=np.zeros(n, int))

    pops = (
        InputPopulation("in", (n_in,), value_bits=value_bits),
        layer("h", n_h),
        layer("h2", n_h2),
        OutputPopulation("out", (3,), bias=rng.integers(-5, 6, 3)),
    )
    projs = (
        DenseProjection("in", "h", rng.integers(-7, 10, (n_h, n_in))),
        DenseProjection("h", "h2", rng.integers(-5, 8, (n_h2, n_h))),
        DenseProjection("h2", "out", rng.integers(-7, 8, (3, n_h2))),
    )
    return SNNGraph(pops, projs, timesteps=timesteps, v_bits=v_bits)


def assert_paths_equal(program, xs, width):
    """Run ``xs`` through the untraced and the traced simulator; compare everything they report."""
    fast, listed = Simulator(program, width=width), Simulator(program, trace=True, width=width)
    for x in xs:
        a, b = fast.run(x, record=True), listed.run(x, record=True)
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.step_cycles, b.step_cycles)
        assert a.rasters.keys() == b.rasters.keys()
        for name in a.rasters:
            np.testing.assert_array_equal(a.rasters[name], b.rasters[name])
    np.testing.assert_array_equal(fast.stats, listed.stats)
    for name in ("piece_ops", "piece_spikes", "piece_clipped", "core_step_busy", "step_spikes_total"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(listed, name), err_msg=name)
    assert (fast.cycles, fast.dram_bytes) == (listed.cycles, listed.dram_bytes)
    assert fast.piece_spikes.sum() == fast.totals().spikes  # both paths share fire: check it on its own
    return fast


@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(1, 90),
    n_h=st.integers(1, 70),
    n_h2=st.integers(1, 12),
    timesteps=st.integers(1, 4),
    value_bits=st.sampled_from([1, 4]),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    neurons=st.sampled_from([8, 32, 64]),
    lanes=st.sampled_from([1, 4]),
    axons=st.sampled_from([7, 16, 128]),
)
def test_random_dense_graphs_fast_path_equals_the_event_list_path(
    seed, n_in, n_h, n_h2, timesteps, value_bits, density, neurons, lanes, axons
):
    """Split fan-ins (partial sums in the scratch row), short rows (by event or by dot product) and
    dense input values, at every state width the bounds allow."""
    rng = np.random.default_rng(seed)
    hw = hw_of(1, 1, neurons=neurons, lanes=lanes, axons=axons)
    program = compile(dense_graph(rng, n_in, n_h, n_h2, timesteps, value_bits), hw)
    assert program.plan.mode == "rounds"
    xs = rng.integers(0, 2**value_bits, (2, n_in)) * (rng.random((2, n_in)) < density)
    for width in widths(program):
        assert_paths_equal(program, xs, width)


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), neurons=st.sampled_from([16, 64]), axons=st.sampled_from([9, 64]))
def test_random_transformers_fast_path_equals_the_event_list_path(seed, neurons, axons):
    """Convolutions, products, pools and identities: the step-by-step path (``Simulator._rounds_by_step``)."""
    cfg = small_config(1, 2, 1, 2, 4, 1)
    program = compile(convert(random_checkpoint(cfg, seed), weight_bits=6), hw_of(1, 1, neurons=neurons, axons=axons))
    assert program.plan.mode == "rounds"
    xs = np.random.default_rng(seed).integers(0, 16, (1, *cfg.image_shape))
    for width in widths(program):
        assert_paths_equal(program, xs, width)


def test_the_scratch_row_and_the_dot_product_are_used_and_exact():
    """A case that takes both shortcuts: 300 inputs cut into 16-input chunks (partial sums summed
    in the scratch row) and a 5-neuron layer fed by every one of 40 busy neurons (dot products)."""
    rng = np.random.default_rng(3)
    graph = dense_graph(rng, 300, 40, 5, 4, 4)
    program = compile(graph, hw_of(1, 1, neurons=64, lanes=4, axons=16))
    sim = Simulator(program)
    assert (sim.low.row_group_root >= 0).sum() >= 10 and (sim.low.row_group_tw_off >= 0).sum() >= 1
    xs = rng.integers(1, 16, (2, 300))
    for width in widths(program):
        fast = assert_paths_equal(program, xs, width)
        assert fast.totals().spikes > 100 and fast.stats[1] > 0  # spikes, and MACs of the graded input


def test_a_membrane_out_of_range_stops_both_paths_alike():
    """8-bit membranes and 300 inputs of weight up to 9: the hidden layer leaves the range at once."""
    graph = dense_graph(np.random.default_rng(0), 300, 8, 2, 2, 1, v_bits=8)
    program = compile(graph, hw_of(1, 1, neurons=64, lanes=4, axons=16))
    x = np.ones(300, np.int64)
    messages = []
    for trace in (False, True):
        with pytest.raises(GraphError, match=r"membrane of population 'h' left the 8-bit range at step 1\.") as err:
            Simulator(program, trace=trace).run(x)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@given(size=st.integers(1, 5000), dtype=st.sampled_from([np.int8, np.int16, np.int32, np.int64]))
def test_aligned_copies_start_on_64_byte_boundaries(size, dtype):
    values = np.arange(size).astype(dtype)
    out = aligned(values)
    assert out.ctypes.data % 64 == 0 and out.dtype == dtype
    np.testing.assert_array_equal(out, values)
    out[:] = 0  # a copy: the input is untouched
    np.testing.assert_array_equal(values, np.arange(size).astype(dtype))
