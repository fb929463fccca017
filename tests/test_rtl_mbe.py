"""MBE units in the RTL core (``docs/architecture.md`` section 4.5, ``docs/rtl.md``).

On Amaranth's simulator (fast): an ``mbe`` piece's phase F takes ``ceil(n/lanes)`` cycles in the
input window plus one pass of ``ceil(n/lanes)`` per basis at every output step, and leaves the
units' ``X``, basis membranes and payloads of a hand-written reference. Co-simulated (cocotb +
Icarus): random small MBE networks (``in -> dense -> mbe (-> dense / identity -> mbe) -> dense ->
out``), every core alone and the whole array, exactly equal to the simulator at every step:
phase ends, every membrane including the basis membranes, every payload and every packet. A
flipped table bit, a wrong offset and a wrong event cost must be reported.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from amaranth.sim import Simulator as AmaranthSim
from test_mbe_hardware import MBE_CORE, mbe_pop, random_mbe_graph

from conftest import HAVE_ICARUS, hw_of
from spikeforge.mapping import compile
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig, HardwareConfig
from spikeforge.mapping.images import PIECE_CODES
from spikeforge.models.graph import DenseProjection, InputPopulation, NeuronPopulation, OutputPopulation, SNNGraph
from spikeforge.rtl import cosim, cosim_core, export_rtl, piece_init
from spikeforge.rtl.array import array_inits
from spikeforge.rtl.core import Core
from spikeforge.rtl.cosim import cosim_array
from spikeforge.rtl.piece import PieceInit
from spikeforge.sim import Simulator

pytestmark = pytest.mark.rtl


# --------------------------------------------------------------------------- Amaranth's simulator
UNIT_HW = HardwareConfig(
    array=ArrayConfig(1, 1),
    core=CoreConfig(axons=4, neurons=32, lanes=4, v_bits=16, weight_bits=8, slots=2, **MBE_CORE),
)
UN, UB, UT, ULANES, UVB = 6, 2, 3, 4, 16  # units, bases, steps; 2 lane groups, the second half used
U_IN, U_OUT = 1, 3  # input window 1..3, firing window 3..5 (out_start = in_start + T - 1)
U_BIAS = np.array([9, -4, 14, 3, 20, -12])  # X = 3 * bias: 27 and 60 are clipped to 25, -36 to -30
U_VTH = np.array([[12, 6, 3], [20, 10, 5]])
U_R = np.array([[12, 6, 3], [16, 9, 4]])
U_DI = np.array([[4, 2, 1], [-3, 5, 7]])
U_C = np.array([-2, 5])
U_XLO, U_XHI = -30, 25


def mbe_piece() -> PieceInit:
    units = np.stack([np.zeros(UN, int), U_BIAS, np.zeros(UN, int)], axis=1)
    table = np.stack([U_VTH, U_R, U_DI], axis=-1).reshape(-1, 3)
    offsets = np.stack([U_C, np.zeros(UB, int), np.zeros(UB, int)], axis=1)
    return PieceInit(
        kind=PIECE_CODES["mbe"],
        n=UN,
        in_start=U_IN,
        out_start=U_IN + UT - 1,
        timesteps=UT,
        first=0,
        slots=(),
        synapse=np.zeros((0, ULANES), np.int64),
        params=np.concatenate([units, table, offsets, [[U_XLO, U_XHI, 0]]]).astype(np.int64),
        bases=UB,
    )


def reference(steps: int):
    """Per step: phase-F cycles, X, U (bases x units) and the payloads (None outside the firing window)."""
    g = -(-UN // ULANES)
    x, u = np.zeros(UN, int), np.zeros((UB, UN), int)
    out = []
    for t in range(steps):
        cycles, pay = 0, None
        k = t - (U_IN + UT - 1)
        if U_IN <= t < U_IN + UT:
            x = x + U_BIAS
            cycles += g
        if 0 <= k < UT:
            if k == 0:
                u = np.clip(x, U_XLO, U_XHI)[None, :] - U_C[:, None]
            pay = np.zeros(UN, int)
            for b in range(UB):
                s = u[b] >= U_VTH[b, k]
                u[b] -= s * U_R[b, k]
                pay += s * U_DI[b, k]
            cycles += UB * g
        out.append((cycles, x.copy(), u.copy(), pay))
    return out


def test_an_mbe_piece_fires_one_pass_per_basis_with_the_contracts_cycles():
    dut = Core(UNIT_HW, mbe_piece())
    steps = U_IN + 2 * UT + 1
    seen = []

    def word(v, j, bits):
        v = (v >> (j * bits)) & ((1 << bits) - 1)
        return v - (1 << bits) if v >> (bits - 1) else v

    async def bench(ctx):
        for t in range(steps):
            ctx.set(dut.step, t)
            ctx.set(dut.fire, 1)
            done = []
            for _ in range(12):
                done.append(ctx.get(dut.f_done))
                await ctx.tick()
                ctx.set(dut.fire, 0)
            mem = []
            for grp in range(8):
                ctx.set(dut.dbg_maddr, grp)
                mem += [word(ctx.get(dut.dbg_v), lane, UVB) for lane in range(ULANES)]
            ctx.set(dut.dbg_haddr, t)
            hist = ctx.get(dut.dbg_h)
            seen.append((done, mem, [word(hist, j, UVB) for j in range(UN)]))

    sim = AmaranthSim(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    ref = reference(steps)
    assert [r[0] for r in ref] == [0, 2, 2, 6, 4, 4, 0, 0]  # ceil(6/4) bias, + 2 bases x ceil(6/4) from k = 0
    fired = 0
    for t, ((done, mem, hist), (cycles, x, u, pay)) in enumerate(zip(seen, ref)):
        assert done == [0] * cycles + [1] * (12 - cycles), f"step {t}: f_done"
        assert mem[:UN] == list(x) and mem[UN:8] == [0, 0], f"step {t}: X"
        for b in range(UB):  # basis b's block starts at lane group (b + 1) * 2; lanes past n stay 0
            assert mem[(b + 1) * 8 : (b + 1) * 8 + 8] == list(u[b]) + [0, 0], f"step {t}: U_{b}"
        if pay is not None:
            assert hist == list(pay), f"step {t}: payloads"
            fired += 1
    assert fired == UT
    assert any(p is not None and (p != 0).sum() >= 2 for *_, p in ref)  # the comparison is not of silence
    assert sorted({int(v) for v in np.clip(3 * U_BIAS, U_XLO, U_XHI)} - set(3 * U_BIAS)) == [-30, 25]


# --------------------------------------------------------------------------- co-simulation
def mbe_program(seed, lanes, bases, T, hidden, identity=False, n_in=5, axons=16, rows=2, cols=2):
    rng = np.random.default_rng(seed)
    graph = random_mbe_graph(rng, T, n_in, hidden, bases, identity)
    program = compile(graph, hw_of(rows, cols, neurons=32, lanes=lanes, axons=axons, **MBE_CORE))
    assert program.plan.mode == "resident"
    return program, rng.integers(0, 8, n_in)


def expected_counts(program, x):
    """Membrane words (X and basis blocks of mbe pieces), payload/spike entries and graded packets."""
    run = Simulator(program, trace=True).run(x)
    mem = sum(len(m) for tr in run.trace for m in tr.membranes)
    ent = sum(len(s) for tr in run.trace for s in tr.spikes if s is not None)
    mbe_ids = [p.id for p in program.pieces if p.kind == "mbe"]
    graded_out = sum(int(np.isin(tr.flit_src, mbe_ids).sum()) for tr in run.trace)
    return run, mem, ent, graded_out


CONFIGS = [
    # (seed, lanes, bases, T, hidden, identity, n_in, axons)
    pytest.param((1, 1, 1, 2, (5,), False, 5, 16), id="l1-N1-T2"),
    pytest.param((2, 4, 2, 3, (6,), False, 5, 16), id="l4-N2-T3"),
    pytest.param((3, 4, 3, 4, (7, 7), True, 5, 16), id="l4-N3-T4-mbe-identity-mbe"),
    pytest.param((4, 1, 4, 3, (5, 4), False, 5, 16), id="l1-N4-T3-mbe-dense-mbe"),
]


@pytest.mark.icarus
@pytest.mark.parametrize("config", CONFIGS)
def test_every_core_of_a_random_mbe_network_matches_the_simulator(config):
    program, x = mbe_program(*config)
    report = cosim(program, x)
    assert report.ok, report.format()
    run, mem, ent, graded_out = expected_counts(program, x)
    assert sum(c.membranes for c in report.cores) == mem
    assert sum(c.spikes for c in report.cores) == ent > 0
    assert all(c.steps == len(run.trace) for c in report.cores)
    mbe_cores = [c for c in report.cores if program.pieces[c.piece].kind == "mbe"]
    assert sum(c.packets for c in mbe_cores) == graded_out > 0  # payload flits, one by one


ARRAY_CONFIGS = [
    # (seed, lanes, bases, T, hidden, identity, n_in, axons)
    pytest.param((7, 1, 2, 3, (6, 6), False, 5, 16), id="l1-N2-T3-mbe-dense-mbe"),
    pytest.param((10, 4, 3, 2, (6, 6), True, 5, 16), id="l4-N3-T2-mbe-identity-mbe"),
    # 14 rows of 2 words over a 16-word synapse SRAM: the mbe root and a partial piece (phase P,
    # which only the array bench runs)
    pytest.param((5, 4, 2, 3, (6,), False, 14, 2), id="l4-N2-T3-partial-sums"),
]


@pytest.mark.icarus
@pytest.mark.parametrize("config", ARRAY_CONFIGS)
def test_a_two_by_two_array_of_mbe_cores_matches_the_simulator(config):
    program, x = mbe_program(*config)
    if config[-1] == 2:
        assert any(p.kind == "partial" for p in program.pieces)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    run, mem, ent, graded_out = expected_counts(program, x)
    assert report.membranes == mem and report.spikes == ent > 0 and graded_out > 0
    assert report.steps == len(run.trace)


@pytest.mark.icarus
def test_if_and_mbe_layers_mix_on_one_array():
    """``in -> h1 (IF) -> m (mbe) -> h2 (IF) -> out``: an mbe piece takes spikes and IF neurons take
    payloads; the IF cores' one-bit spike rows sit in the wider history port of an mbe hardware file."""
    rng = np.random.default_rng(11)
    T = 3
    pops = (
        InputPopulation("in", (5,), value_bits=3),
        NeuronPopulation("h1", (6,), threshold=rng.integers(3, 8, 6), bias=np.zeros(6, int), v0=np.zeros(6, int)),
        mbe_pop("m", 6, T, rng, bases=2, lo=-20, hi=20),
        NeuronPopulation("h2", (4,), threshold=rng.integers(5, 15, 4), bias=np.zeros(4, int), v0=np.zeros(4, int)),
        OutputPopulation("out", (3,), bias=np.zeros(3, int)),
    )
    names = [p.name for p in pops]
    projs = tuple(
        DenseProjection(a, b, rng.integers(-3, 5, (pops[i + 1].size, pops[i].size)))
        for i, (a, b) in enumerate(zip(names, names[1:]))
    )
    program = compile(SNNGraph(pops, projs, timesteps=T), hw_of(2, 2, neurons=32, lanes=4, axons=16, **MBE_CORE))
    assert sorted(p.kind for p in program.pieces) == ["mbe", "neuron", "neuron", "output"]
    x = rng.integers(0, 8, 5)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    run, mem, ent, graded_out = expected_counts(program, x)
    assert report.membranes == mem and report.spikes == ent and graded_out > 0
    for name in ("h1", "h2"):  # h1's spikes reach the mbe units, their payloads make h2 fire
        k = next(p.id for p in program.pieces if p.population == name)
        assert sum(int(s.sum()) for tr in run.trace if (s := tr.spikes[k]) is not None) > 0, name


# --------------------------------------------------------------------------- mutations must be caught
@pytest.fixture(scope="module")
def small():
    program, x = mbe_program(2, 4, 2, 3, (6,))
    mbe = next(p for p in program.pieces if p.kind == "mbe")
    return program, x, mbe


@pytest.mark.icarus
def test_a_flipped_table_bit_is_reported(small):
    program, x, mbe = small
    init = piece_init(program, mbe.id)
    params = init.params.copy()
    out_start = program.graph.schedule()[mbe.population].out_start
    params[mbe.n + 0, 2] ^= 1 << 3  # DI[0, 0]: basis 0's intensity at the first output step
    rep = cosim_core(program, mbe.id, x, init=dataclasses.replace(init, params=params))
    assert not rep.ok
    m = rep.mismatches[0]
    assert m["what"] == "payload" and m["step"] == out_start, rep.first_mismatch()
    assert f"piece {mbe.id} 'm0'" in rep.first_mismatch()


@pytest.mark.icarus
def test_a_wrong_basis_offset_is_reported_in_the_basis_membranes(small):
    program, x, mbe = small
    init = piece_init(program, mbe.id)
    params = init.params.copy()
    T = program.graph.timesteps
    params[mbe.n + 2 * T + 1, 0] += 1  # C_1
    rep = cosim_core(program, mbe.id, x, init=dataclasses.replace(init, params=params))
    assert not rep.ok
    g = -(-mbe.n // 4) * 4
    neurons = {m["neuron"] for m in rep.mismatches if m["what"] == "membrane"}
    assert neurons and all(2 * g <= j < 3 * g for j in neurons)  # basis 1's block only


@pytest.mark.icarus
def test_a_wrong_event_cost_on_an_mbe_core_is_reported(small):
    program, x, mbe = small
    rep = cosim_core(program, mbe.id, x, extra_dense_cycles=1)
    assert not rep.ok and rep.mismatches[0]["what"].startswith("i_done")
    assert any(m["what"] == "busy cycles of the step" for m in rep.mismatches)


@pytest.mark.icarus
def test_a_flipped_table_bit_in_the_array_is_reported_with_its_core(small):
    program, x, mbe = small
    inits = array_inits(program)
    k = int(program.plan.core[mbe.id])
    params = inits[k].params.copy()
    params[mbe.n : mbe.n + 2 * program.graph.timesteps, 0] ^= 1 << 2  # every VTH off by 4
    inits[k] = dataclasses.replace(inits[k], params=params)
    report = cosim_array(program, x, inits=inits)
    assert not report.ok
    assert report.mismatches[0]["core"] in {int(c) for c in program.plan.core}
    assert any(m["core"] == k for m in report.mismatches)


@pytest.mark.icarus
@pytest.mark.slow
def test_the_bundled_mlps_second_gelu_core_matches_the_simulator(mbe_mlp8, digits):
    """The converted MLP (real GELU tables, T = 8) on default 256-neuron, 16-lane cores: the core of
    ``gelu1`` takes the payload flits of both ``gelu0`` cores and sends its own."""
    program = compile(mbe_mlp8, hw_of(4, 4, **MBE_CORE))
    piece = next(p for p in program.pieces if p.population == "gelu1")
    rep = cosim_core(program, piece.id, digits.x_test[0])
    assert rep.ok, rep.first_mismatch()
    assert rep.events > 300 and rep.packets > 100 and rep.spikes == piece.n * program.graph.timesteps


@pytest.mark.icarus
@pytest.mark.slow
def test_the_bundled_mlp_runs_on_a_two_by_two_array_like_the_simulator(mbe_mlp8, digits):
    """The whole converted MLP (three mbe cores and the logits) end to end on RTL cores and routers."""
    program = compile(mbe_mlp8, hw_of(2, 2, **MBE_CORE))
    assert sorted(p.kind for p in program.pieces) == ["mbe", "mbe", "mbe", "output"]
    x = digits.x_test[0]
    report = cosim_array(program, x)
    assert report.ok, report.format()
    run, mem, ent, graded_out = expected_counts(program, x)
    assert report.membranes == mem and report.spikes == ent > 0 and graded_out > 500


# --------------------------------------------------------------------------- export
def test_export_writes_the_mbe_tables_and_icarus_elaborates_them(tmp_path, small):
    program, _, mbe = small
    manifest = export_rtl(program.hardware, tmp_path, program)
    core = next(c for c in manifest["cores"] if c["piece"] == mbe.id)
    lut = core["memories"]["lut"]
    vb = program.hardware.core.v_bits
    words = [int(w, 16) for w in (tmp_path / lut["file"]).read_text().split()]
    table = program.images(mbe.id)["params"].fields[mbe.n :]
    assert lut["bits"] == 3 * vb and len(words) == len(table)
    for w, row in zip(words, table):
        got = [(w >> (i * vb)) & ((1 << vb) - 1) for i in range(3)]
        assert [v - (v >> (vb - 1) << vb) for v in got] == list(row)
    if HAVE_ICARUS:
        import subprocess

        subprocess.run(["iverilog", "-g2012", "-o", os.devnull, str(tmp_path / manifest["file"])], check=True)
