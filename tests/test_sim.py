"""The cycle-level simulator: tier-2 exactness (spike rasters equal the functional executor's on
every array size), hand-computed cycle counts of the contract (docs/architecture.md sections 4
and 6), DRAM traffic equal to the plan's, energy equal to counts x profile values."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import hw_of, random_checkpoint, small_config, widths
from spikeforge.mapping import HardwareConfig, compile, load_hardware
from spikeforge.models import convert
from spikeforge.models.executor import run_snn
from spikeforge.models.graph import DenseProjection, InputPopulation, NeuronPopulation, OutputPopulation, SNNGraph
from spikeforge.sim import MEMORIES, SimResult, Simulator, simulate
from spikeforge.sim import kernels as K
from spikeforge.sim.lowering import state_bound

CONFIGS = "configs/array-{}.toml"


def assert_rasters_equal(program, x):
    """Every population's raster and the logits equal the functional executor's, sample by sample,
    with 64-bit state words and, where the program's bounds allow them, 32-bit ones."""
    ref = run_snn(program.graph, x)
    for width in widths(program):
        sim = Simulator(program, width=width)
        for i in range(len(x)):
            run = sim.run(x[i], record=True)
            assert run.rasters.keys() == {p.name for p in program.graph.populations if p.kind != "output"}
            for name, raster in run.rasters.items():
                np.testing.assert_array_equal(
                    raster, ref.rasters[name][:, i], err_msg=f"population {name}, sample {i}, width {width}"
                )
            np.testing.assert_array_equal(run.logits, ref.logits[i])
    return sim


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("size", ["1x1", "4x4", "16x16"])
def test_bundled_model_rasters_equal_the_reference(tiny_graph, digits, size):
    program = compile(tiny_graph, load_hardware(CONFIGS.format(size)))
    sim = assert_rasters_equal(program, digits.x_test[:2])
    assert sim.totals().spikes > 1000  # the network is active: the comparison is not of silence


@given(
    stages=st.integers(0, 1),
    chans=st.integers(1, 4),
    heads=st.integers(1, 2),
    head_dim=st.integers(1, 3),
    mlp=st.integers(1, 8),
    blocks=st.integers(0, 1),
    seed=st.integers(0, 1000),
    neurons=st.sampled_from([8, 16, 64]),
    lanes=st.sampled_from([1, 4]),
    axons=st.sampled_from([9, 64]),
    shape=st.sampled_from([(1, 1), (4, 4), (16, 16)]),
    neuron=st.sampled_from(["dif", "if"]),
)
def test_random_graphs_rasters_equal_the_reference(
    stages, chans, heads, head_dim, mlp, blocks, seed, neurons, lanes, axons, shape, neuron
):
    cfg = small_config(stages, chans, heads, head_dim, mlp, blocks)
    graph = convert(random_checkpoint(cfg, seed), weight_bits=6, neuron=neuron)
    program = compile(graph, hw_of(*shape, neurons=neurons, lanes=lanes, axons=axons, routing_entries=1 << 16))
    x = np.random.default_rng(seed).integers(0, 16, (2, *cfg.image_shape))
    assert_rasters_equal(program, x)


# --------------------------------------------------------------------------- cycle scenarios
def one_layer_graph(n_in, n_hidden, x_values=None, threshold=1000, timesteps=1):
    """in (n_in graded) -> dense -> h (n_hidden IF) -> dense -> out (1)."""
    pops = (
        InputPopulation("in", (n_in,), value_bits=4),
        NeuronPopulation(
            "h",
            (n_hidden,),
            threshold=np.full(n_hidden, threshold),
            bias=np.zeros(n_hidden, int),
            v0=np.zeros(n_hidden, int),
        ),
        OutputPopulation("out", (1,), bias=np.zeros(1, int)),
    )
    projs = (
        DenseProjection("in", "h", np.ones((n_hidden, n_in), int)),
        DenseProjection("h", "out", np.ones((1, n_hidden), int)),
    )
    return SNNGraph(pops, projs, timesteps=timesteps)


def step_cycles(program, x):
    sim = Simulator(program)
    run = sim.run(x, record=True)
    return sim, run


def core_xy(program, population):
    piece = next(p for p in program.pieces if p.population == population)
    return program.core_xy(piece.id)


@pytest.mark.parametrize(("n_hidden", "lanes"), [(16, 16), (16, 4), (256, 16), (256, 1)])
def test_one_event_and_a_full_row(n_hidden, lanes):
    """One graded host flit into a dense slot of n neurons: I = hops + 2 + ceil(n / lanes) + pipeline."""
    hw = hw_of(4, 4, lanes=lanes)
    program = compile(one_layer_graph(1, n_hidden), hw)
    assert program.plan.mode == "resident"
    sim, run = step_cycles(program, np.array([3]))
    x, y = core_xy(program, "h")
    c = hw.core
    expect_i = (x + y) + 2 + -(-n_hidden // lanes) + c.pipeline_cycles
    t = 1  # the input of step 0 is sent at step 1 (section 5)
    assert sim.step_phases_total[t, 0] == expect_i
    assert sim.step_phases_total[t, 1] == 0
    # phase F: the busiest core's update; h and out are on different cores
    expect_f = -(-n_hidden // lanes)
    assert sim.step_phases_total[t, 2] == expect_f
    assert run.step_cycles[t] == expect_i + expect_f + 2 * hw.barrier_cycles
    assert sim.totals().noc_hops == x + y and sim.totals().noc_flits == 1


@pytest.mark.parametrize("k", [1, 5, 64, 200])
def test_a_burst_of_k_events(k):
    """k host flits to one core: popped back to back, I = hops + 2 + k * g + pipeline, whatever the FIFO."""
    hw = hw_of(4, 4, lanes=4, input_fifo_events=16)
    program = compile(one_layer_graph(k, 8, threshold=10**6), hw)
    sim, _ = step_cycles(program, np.full(k, 5))
    x, y = core_xy(program, "h")
    assert sim.step_phases_total[1, 0] == (x + y) + 2 + k * 2 + hw.core.pipeline_cycles
    assert sim.totals().noc_flits == k


def test_barrier_with_k_spiking_neurons():
    """A step after k neurons spiked: k flits from h's encoder to out, one per cycle, and the step
    length is I + barrier + F + barrier."""
    hw = hw_of(4, 4)
    n = 40
    graph = one_layer_graph(1, n, threshold=3, timesteps=4)
    program = compile(graph, hw)
    sim, run = step_cycles(program, np.array([7]))
    (hx, hy), (ox, oy) = core_xy(program, "h"), core_xy(program, "out")
    hops = abs(hx - ox) + abs(hy - oy)
    w_out = graph.schedule()["out"]
    checked = 0
    for t in range(w_out.in_start, w_out.in_start + graph.timesteps):
        k = int(run.rasters["h"][t - 1].sum())
        host = 1 if 1 <= t <= graph.timesteps else 0  # the input flit of step t - 1
        if host or not k:
            continue
        expect_i = hops + 2 + k * 1 + hw.core.pipeline_cycles  # out has one neuron: g = 1
        assert sim.step_phases_total[t, 0] == expect_i, t
        f = max(-(-n // hw.core.lanes) if t < graph.schedule()["h"].out_start + 4 else 0, 1)
        assert run.step_cycles[t] == expect_i + f + 2 * hw.barrier_cycles
        checked += 1
    assert checked >= 1


def mesh(flits, hw, start=None):
    """Run the mesh kernel on ``flits`` = [(src core, dst core, cost)]; return (cycles, noc counters)."""
    rows, cols = hw.array.rows, hw.array.cols
    src = np.array([f[0] for f in flits], np.int64)
    order = np.argsort(src, kind="stable")
    noc = np.zeros(4, np.int64)
    busy = np.zeros(rows * cols, np.int64)
    st_ = np.zeros(rows * cols + 1, np.int64) if start is None else np.array(start, np.int64)
    cycles = K.mesh_phase(
        src[order],
        np.array([f[1] for f in flits], np.int64)[order],
        np.array([f[2] for f in flits], np.int64)[order],
        st_,
        rows,
        cols,
        hw.noc.router_buffer_flits,
        hw.core.input_fifo_events,
        hw.core.pipeline_cycles,
        busy,
        noc,
    )
    return cycles, noc


def test_a_three_hop_packet_arrives_at_c_plus_h_plus_2():
    hw = hw_of(4, 4)
    dst = 1 * 4 + 2  # (x=2, y=1): 2 east, 1 south
    cycles, noc = mesh([(0, dst, 1)], hw)
    assert cycles == 0 + 3 + 2 + 1 + hw.core.pipeline_cycles
    assert noc.tolist() == [1, 2, 1, 0]  # flits, hops east-west, hops north-south, stalls
    cycles, _ = mesh([(0, dst, 1)], hw, start=[5] + [0] * 16)  # sent at cycle 5
    assert cycles == 5 + 3 + 2 + 1 + hw.core.pipeline_cycles


def test_a_contended_link():
    """Core 0 sends at cycle 0 and core 1 at cycle 1, both to core 2 through router 1's east port.
    At cycle 2 both heads want that port; round-robin after L (the initial grant) picks W (core 0's
    flit), so core 1's flit waits one cycle (one stall) and is popped at cycle 5 instead of 4."""
    hw = hw_of(1, 4)
    cycles, noc = mesh([(0, 2, 1), (1, 2, 1)], hw, start=[0, 1, 0, 0, 0])
    # core 0's flit: popped at 0 + 2 + 2 = 4, busy to 5; core 1's: granted at 3, ejected at 4, popped at 5
    assert cycles == 6 + hw.core.pipeline_cycles
    assert noc.tolist() == [2, 3, 0, 1]


def test_backpressure_from_a_full_core_fifo_stalls_but_delivers():
    hw = hw_of(1, 2, input_fifo_events=2)
    hw = HardwareConfig(array=hw.array, core=hw.core, noc=hw.noc.__class__(router_buffer_flits=1))
    n = 20
    cycles, noc = mesh([(0, 1, 10)] * n, hw)
    assert cycles == 0 + 1 + 2 + n * 10 + hw.core.pipeline_cycles  # the core never idles after the first pop
    assert noc[0] == n and noc[1] == n and noc[3] > 0


# --------------------------------------------------------------------------- result, DRAM, energy
@pytest.fixture(scope="module")
def swap_result(tiny_graph, digits):
    program = compile(tiny_graph, load_hardware(CONFIGS.format("4x4")))
    return program, simulate(program, digits.x_test[:3], digits.y_test[:3], progress=False)


@pytest.mark.parametrize("size", ["4x4", "1x1"])
def test_dram_bytes_equal_the_plan(tiny_graph, digits, size):
    program = compile(tiny_graph, load_hardware(CONFIGS.format(size)))
    assert program.plan.mode in ("swap", "rounds")
    result = simulate(program, digits.x_test[:2], progress=False, reference=False)
    assert result.memory_traffic_bytes["dram"] == program.dram_bytes_per_inference() > 0


def test_resident_uses_no_dram_and_counts_the_mesh(tiny_graph, digits):
    program = compile(tiny_graph, load_hardware(CONFIGS.format("16x16")))
    result = simulate(program, digits.x_test[:1], progress=False, reference=False)
    assert result.memory_traffic_bytes["dram"] == 0 and result.mode == "resident"
    assert result.noc["flits"] > 0 and result.noc["hops"] >= 0
    assert sum(result.per_step["cycles"]) == result.cycles_per_inference


def test_result_schema_and_round_trip(swap_result, tmp_path):
    program, result = swap_result
    d = result.to_dict()
    for key in (
        "spikes_per_inference",
        "synaptic_ops_per_inference",
        "cycles_per_inference",
        "latency_s",
        "memory_traffic_bytes",
        "energy_pj",
        "accuracy",
    ):
        assert key in d
    assert set(d["memory_traffic_bytes"]) == {*MEMORIES, "dram"}
    assert {"total", "paper_convention", "synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage"} <= set(
        d["energy_pj"]
    )
    assert result.exactness == {"logits_equal_samples": 3, "exact": True}
    assert result.latency_s == pytest.approx(result.cycles_per_inference / 500e6)
    assert sum(v["spikes"] for v in result.per_population.values()) == pytest.approx(result.spikes_per_inference)
    assert sum(result.per_core["synaptic_ops"]) == pytest.approx(
        result.synaptic_ops_per_inference + result.macs_per_inference
    )
    per_step_core = np.array(result.per_core["busy_cycles_per_step"])
    assert per_step_core.shape == (result.total_steps, result.cores)
    np.testing.assert_allclose(per_step_core.sum(0), result.per_core["busy_cycles"])
    assert all(c <= s for c, s in zip(per_step_core.max(1), result.per_step["cycles"]))  # no core outlasts its step
    assert SimResult.load(result.save(tmp_path)) == result


def test_energy_is_counts_times_profile_values(tiny_graph, digits, tmp_path):
    """A user profile with one value per event; the total recomputed here from the counters."""
    profile = tmp_path / "flat.toml"
    profile.write_text(
        '[profile]\nname = "flat"\ndescription = "test"\nsources = "test"\n'
        'components = ["synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage"]\n'
        "synaptic_op_pj = 0.5\nmac_pj = 3.0\nneuron_update_pj = 1.5\nspike_pj = 0.25\n"
        "noc_flit_pj = 2.0\nnoc_hop_ew_pj = 0.75\nnoc_hop_ns_pj = 1.25\ndram_pj_per_bit = 10.0\n"
        "leakage_mw_per_core = 0.5\n"
        "[sram_read_pj_per_bit]\n" + "\n".join(f"{m} = 0.01" for m in MEMORIES) + "\n"
        "[sram_write_pj_per_bit]\n" + "\n".join(f"{m} = 0.02" for m in MEMORIES) + "\n"
    )
    program = compile(tiny_graph, load_hardware(CONFIGS.format("4x4")))
    r = simulate(program, digits.x_test[:2], profile=str(profile), progress=False, reference=False)
    sram_bits_read = sum(r.sram_bits["read"].values())
    sram_bits_write = sum(r.sram_bits["write"].values())
    expect = {
        "synaptic_ops": 0.5 * r.synaptic_ops_per_inference + 3.0 * r.macs_per_inference,
        "sram": 0.01 * sram_bits_read + 0.02 * sram_bits_write,
        "neuron_updates": 1.5 * r.neuron_updates_per_inference + 0.25 * r.spikes_per_inference,
        "noc": 2.0 * r.noc["flits"] + 0.75 * r.noc["hops_ew"] + 1.25 * r.noc["hops_ns"],
        "dram": 10.0 * 8 * r.memory_traffic_bytes["dram"],
        "leakage": 0.5 * 16 * r.cycles_per_inference / 500 * 1e3,
    }
    for k, v in expect.items():
        assert r.energy_pj[k] == pytest.approx(v, rel=1e-12), k
    assert r.energy_pj["total"] == pytest.approx(sum(expect.values()), rel=1e-12)
    assert r.energy_pj["paper_convention"] == pytest.approx(
        0.9 * r.synaptic_ops_per_inference + 4.6 * r.macs_per_inference, rel=1e-12
    )
    assert tomllib.loads(profile.read_text())["profile"]["name"] == r.energy["profile"]


# --------------------------------------------------------------------------- bad input
def test_memory_is_checked_before_the_run(tiny_graph, digits):
    from spikeforge.sim import SimulationError, estimate_memory_bytes

    program = compile(tiny_graph, load_hardware(CONFIGS.format("4x4")))
    need = estimate_memory_bytes(program)
    assert 0 < need < 2**30
    with pytest.raises(SimulationError, match=r"needs about .* GiB of memory but .* GiB is available"):
        simulate(program, digits.x_test[:1], memory_limit=need - 1, progress=False)


def test_input_and_label_shapes_are_checked(tiny_graph, digits):
    from spikeforge.models.errors import SpikeForgeError

    program = compile(tiny_graph, load_hardware(CONFIGS.format("16x16")))
    with pytest.raises(SpikeForgeError, match="input has shape"):
        simulate(program, digits.x_test[:2, :, :4], progress=False)
    with pytest.raises(SpikeForgeError, match=r"batch shaped \(samples, 1, 8, 8\)"):
        simulate(program, digits.x_test[0], progress=False)
    with pytest.raises(SpikeForgeError, match="no samples"):
        simulate(program, digits.x_test[:0], progress=False)
    with pytest.raises(SpikeForgeError, match="labels have shape"):
        simulate(program, digits.x_test[:2], digits.y_test[:3], progress=False)
    with pytest.raises(SpikeForgeError, match="input values must be in"):
        simulate(program, digits.x_test[:1] + 100, progress=False)


def test_rounds_share_one_dram_channel_in_request_order():
    """Two cores, one round each (section 7): loads and write-backs queue on one channel, served in
    request order (ties: lower core first); a transfer of b bytes takes latency + ceil(b / bw).

    core 0: load 32 B at 0 -> 0..12, work 5 + pipeline 3 + fire 2 = 10 -> write-back asked at 22
    core 1: load 16 B asked at 0 -> 12..23, work 0 + fire 1 -> write-back asked at 24
    core 0 write-back 16 B: 23..34; core 1 write-back: 34..45.
    """

    def two_rounds(window_lo, busy):
        """Core k runs piece k: windows [lo, 10), loads (32, 16) B, write-backs 16 B, event cycles
        (5, 0), fire cycles (2, 1); pipeline 3, latency 10, 16 B per cycle; step 0."""
        i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
        core_ptr, units, unit_ptr, unit_pieces = i64(0, 1, 2), i64(0, 1), i64(0, 1, 2), i64(0, 1)
        return K.round_timing(
            0,
            core_ptr,
            units,
            unit_ptr,
            unit_pieces,
            i64(*window_lo),
            i64(10, 10),
            i64(32, 16),
            i64(16, 16),
            i64(5, 0),
            i64(2, 1),
            3,
            10,
            16,
            busy,
        )

    busy = np.zeros(2, np.int64)
    assert two_rounds((0, 0), busy) == (45, 80)
    assert busy.tolist() == [10, 1]
    # outside its window a piece takes no round: only core 1 runs
    assert two_rounds((1, 0), np.zeros(2, np.int64)) == (0 + 11 + 1 + 11, 32)  # load 0..11, work 1, back 12..23


def test_a_split_slice_loads_its_chunks_one_at_a_time():
    """Section 7: a slice's pieces (root, then chunk) are each one load then their integration; the
    slice fires and writes back once. Latency 10, 16 B per cycle, pipeline 3.

    core 0, root: load 32 B 0..12, work 5 + 3 -> chunk load asked at 20
    core 1: load 16 B asked at 0 -> 12..23, work 0 + fire 1 -> write-back asked at 24
    core 0, chunk: load 16 B 23..34, work 4 + 3, fire 2 -> write-back (16 + 16 B) asked at 43
    core 1 write-back 16 B: 34..45; core 0's 32 B: 45..57.
    """
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    # pieces 0 (root) and 1 (its chunk) on core 0, piece 2 on core 1; units are slices by root
    core_ptr, units, unit_ptr, unit_pieces = i64(0, 1, 2), i64(0, 2), i64(0, 2, 2, 3), i64(0, 1, 2)
    windows = (i64(0, 0, 0), i64(10, 10, 10))

    def run(b_in, cores):
        busy = np.zeros(2, np.int64)
        ptr = core_ptr if cores == 2 else i64(0, 1, 1)
        result = K.round_timing(
            0, ptr, units, unit_ptr, unit_pieces, *windows, b_in, i64(16, 16, 16), i64(5, 4, 0), i64(2, 0, 1),
            3, 10, 16, busy,
        )  # fmt: skip
        return result, busy.tolist()

    assert run(i64(32, 16, 16), 2) == ((57, 32 + 16 + 16 + 16 + 32), [8 + 7 + 2, 1])
    # alone, the chunk's load follows the root's integration at once: 0..12, 20..31, 38 + 2, 40..52
    assert run(i64(32, 16, 16), 1) == ((52, 80), [17, 0])
    # a chunk outside its window (no bytes in) is skipped: root only, 0..12, 20 + 2, 22..33
    late = (i64(0, 1, 0), windows[1])
    busy = np.zeros(2, np.int64)
    args = (i64(32, 16, 16), i64(16, 16, 16), i64(5, 4, 0), i64(2, 0, 1), 3, 10, 16, busy)
    assert K.round_timing(0, i64(0, 1, 1), units, unit_ptr, unit_pieces, *late, *args) == (33, 32 + 16)


@pytest.mark.parametrize("width", [64, 32])
@pytest.mark.parametrize("case", ["bundled", "fan-in split"])
def test_rounds_fast_path_equals_the_event_list_path(tiny_graph, digits, case, width):
    """Rounds mode applies dense rows without an event list (round_rows) and moves partial sums
    without flit lists unless tracing; both paths must give the same counts, cycles and spikes."""
    if case == "bundled":
        program, xs = compile(tiny_graph, hw_of(1, 1)), digits.x_test[:2]
    else:
        graph = one_layer_graph(300, 40, threshold=60, timesteps=4)
        program = compile(graph, hw_of(1, 1, neurons=64, lanes=4, axons=16))
        assert any(p.kind == "partial" for p in program.pieces)
        xs = np.random.default_rng(0).integers(0, 16, (2, 300))
    assert program.plan.mode == "rounds"
    fast, listed = Simulator(program, width=width), Simulator(program, trace=True, width=width)
    for x in xs:
        a, b = fast.run(x, record=True), listed.run(x, record=True)
        np.testing.assert_array_equal(a.step_cycles, b.step_cycles)
        for name in a.rasters:
            np.testing.assert_array_equal(a.rasters[name], b.rasters[name])
    assert fast.totals().spikes > 0
    np.testing.assert_array_equal(fast.stats, listed.stats)
    np.testing.assert_array_equal(fast.piece_ops, listed.piece_ops)
    assert fast.cycles == listed.cycles and fast.dram_bytes == listed.dram_bytes


# --------------------------------------------------------------------------- state width
def wide_graph(v_bits=24, weight=1, value_bits=4):
    """in (300) -> dense -> h (40 IF) -> out, with every weight ``weight``."""
    pops = (
        InputPopulation("in", (300,), value_bits=value_bits),
        NeuronPopulation("h", (40,), threshold=np.full(40, 60), bias=np.zeros(40, int), v0=np.zeros(40, int)),
        OutputPopulation("out", (1,), bias=np.zeros(1, int)),
    )
    projs = (DenseProjection("in", "h", np.full((40, 300), weight)), DenseProjection("h", "out", np.ones((1, 40), int)))
    return SNNGraph(pops, projs, timesteps=4, weight_bits=16, v_bits=v_bits)


def test_the_state_width_is_decided_from_proven_bounds():
    """32-bit state words only where the bound of every membrane, partial sum and accumulator fits
    int32; a program whose bound exceeds it keeps 64 bits, and forcing 32 on it is refused."""
    hw = hw_of(1, 1, neurons=64, lanes=4, axons=16, weight_bits=16, v_bits=32)
    small = compile(wide_graph(), hw)
    assert state_bound(small.graph) < 2**31 and Simulator(small).width == 32
    assert Simulator(small).state0.dtype == np.int32
    # 32-bit membranes: a step may start at -2**31, and one spike takes it past int32
    wide_v = compile(wide_graph(v_bits=32), hw)
    assert state_bound(wide_v.graph) > 2**31 and Simulator(wide_v).width == 64
    # 24-bit membranes, but 16-bit weights on 8-bit inputs: one step can add 300 * 255 * 32000
    big_w = compile(wide_graph(weight=32000, value_bits=8), hw)
    assert state_bound(big_w.graph) > 2**31
    for program in (wide_v, big_w):
        sim = Simulator(program)
        assert sim.width == 64 and sim.state0.dtype == np.int64
        with pytest.raises(ValueError, match="beyond int32"):
            Simulator(program, width=32)
    # the 64-bit path runs them exactly (inputs small enough to keep the membranes in range)
    assert_rasters_equal(big_w, np.random.default_rng(0).integers(0, 2, (2, 300)) * (np.arange(300) < 2))
    with pytest.raises(ValueError, match="32 or 64"):
        Simulator(small, width=16)


def _tiny_mbe_program():
    from test_mbe_hardware import MBE_CORE, random_mbe_graph

    graph = random_mbe_graph(np.random.default_rng(3), 4, 12, (10, 10), 2, identity=True)
    return compile(graph, hw_of(2, 2, neurons=32, lanes=4, axons=9, **MBE_CORE)), np.random.default_rng(3).integers(
        0, 8, (2, 12)
    )


@pytest.mark.parametrize("case", ["4x4 rounds", "16x16 resident", "fan-in split", "traced", "mbe"])
def test_both_state_widths_give_identical_runs(tiny_graph, digits, case):
    """The same program through 32- and 64-bit state words: the same cycles, rasters, logits, trace
    and every counter."""
    trace = case == "traced"
    if case in ("4x4 rounds", "traced"):
        program, xs = compile(tiny_graph, load_hardware(CONFIGS.format("4x4"))), digits.x_test[:2]
    elif case == "16x16 resident":
        program, xs = compile(tiny_graph, load_hardware(CONFIGS.format("16x16"))), digits.x_test[:2]
    elif case == "fan-in split":
        graph = one_layer_graph(300, 40, threshold=60, timesteps=4)
        program = compile(graph, hw_of(1, 1, neurons=64, lanes=4, axons=16))
        assert any(p.kind == "partial" for p in program.pieces)
        xs = np.random.default_rng(0).integers(0, 16, (2, 300))
    else:
        program, xs = _tiny_mbe_program()
    assert widths(program) == (64, 32)
    sims = {w: Simulator(program, trace=trace, width=w) for w in (64, 32)}
    for x in xs:
        a, b = (sims[w].run(x, record=True) for w in (64, 32))
        np.testing.assert_array_equal(a.step_cycles, b.step_cycles)
        np.testing.assert_array_equal(a.logits, b.logits)
        assert a.rasters.keys() == b.rasters.keys()
        for name in a.rasters:
            np.testing.assert_array_equal(a.rasters[name], b.rasters[name])
        assert len(a.trace) == len(b.trace) == (program.graph.total_steps if trace else 0)
        for ta, tb in zip(a.trace, b.trace):
            for key, va in vars(ta).items():
                vb = getattr(tb, key)
                if isinstance(va, list):
                    assert len(va) == len(vb)
                    for ea, eb in zip(va, vb):
                        assert (ea is None) == (eb is None)
                        if ea is not None:
                            assert ea.dtype == eb.dtype == np.int64
                            np.testing.assert_array_equal(ea, eb)
                else:
                    np.testing.assert_array_equal(va, vb, err_msg=key)
    s64, s32 = sims[64], sims[32]
    assert s64.totals().spikes > 0
    assert dataclasses.asdict(s64.totals()) == dataclasses.asdict(s32.totals())
    for key in (
        "stats",
        "noc",
        "piece_spikes",
        "piece_clipped",
        "piece_ops",
        "step_spikes_total",
        "step_phases_total",
        "core_busy",
        "core_step_busy",
        "step_cycles_total",
    ):
        np.testing.assert_array_equal(getattr(s64, key), getattr(s32, key), err_msg=key)
    assert (s64.cycles, s64.dram_bytes, s64.dram_stall) == (s32.cycles, s32.dram_bytes, s32.dram_stall)
