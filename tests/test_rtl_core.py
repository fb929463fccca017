"""The RTL core against the simulator, cycle for cycle (``docs/rtl.md``).

Co-simulation (cocotb + Icarus Verilog): every core of small resident dense networks replays the
flits the simulator delivered to it, at the cycles it delivered them, and must match the
simulator exactly at every step: the cycle its phase I ends, its phase-F cycles, its busy cycles,
every membrane and every spike. A wrong cycle cost or a flipped weight bit must be reported with
its step, core and neuron. Tests that need Icarus (marker ``icarus``, ``tests/conftest.py``) are
skipped without it, unless ``SPIKEFORGE_REQUIRE_PEERS`` is set (CI): then they fail.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from conftest import HAVE_ICARUS
from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.rtl import RtlError, ToolMissingError, cosim, cosim_core, export_rtl, piece_init, require_icarus
from spikeforge.rtl.scenarios import dense_network, dense_program
from spikeforge.sim import Simulator


def scenario(seed, sizes, *, neurons, lanes, weight_bits=8, dif=False, residual=False, rows=2, cols=3):
    graph = dense_network(seed, sizes, weight_bits=weight_bits, dif=dif, residual=residual)
    program = dense_program(graph, rows, cols, neurons=neurons, lanes=lanes, weight_bits=weight_bits)
    assert program.plan.mode == "resident"
    x = np.random.default_rng(seed).integers(0, 16, sizes[0])
    return program, x


# --------------------------------------------------------------------------- co-simulation matrix
MATRIX = [
    # (sizes, neurons, lanes, weight_bits, dif, residual)
    pytest.param((12, 16, 16), 16, 1, 8, False, True, id="n16-l1-w8-if-identity"),
    pytest.param((12, 24, 24), 16, 4, 4, True, True, id="n16-l4-w4-dif-identity-2slices"),
    pytest.param((12, 16, 16), 16, 16, 8, False, False, id="n16-l16-w8-if"),
    pytest.param((20, 40, 16), 64, 4, 8, True, False, id="n64-l4-w8-dif"),
    pytest.param((8, 100, 8), 128, 16, 4, False, False, id="n128-l16-w4-if-partial-group"),
    pytest.param((16, 256, 8), 256, 16, 8, True, False, id="n256-l16-w8-dif", marks=pytest.mark.slow),
]


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize(("sizes", "neurons", "lanes", "weight_bits", "dif", "residual"), MATRIX)
def test_every_core_matches_the_simulator(sizes, neurons, lanes, weight_bits, dif, residual):
    program, x = scenario(3, sizes, neurons=neurons, lanes=lanes, weight_bits=weight_bits, dif=dif, residual=residual)
    report = cosim(program, x)
    assert report.ok, report.format()
    run = Simulator(program, trace=True).run(x)
    steps = len(run.trace)
    spikes = sum(
        p.n * sum(1 for tr in run.trace if tr.spikes[p.id] is not None) for p in program.pieces if p.kind == "neuron"
    )
    flits = sum(tr.flit_piece.size for tr in run.trace)
    assert [c.steps for c in report.cores] == [steps] * len(program.pieces)
    assert sum(c.membranes for c in report.cores) == steps * sum(p.n for p in program.pieces)
    assert sum(c.spikes for c in report.cores) == spikes > 0
    assert sum(c.events for c in report.cores) == flits > 0
    assert sum(c.packets for c in report.cores) == sum(int((tr.flit_src >= 0).sum()) for tr in run.trace) > 0
    assert all(c.busy_checks == steps for c in report.cores)
    assert sum(int(tr.flit_graded.sum()) for tr in run.trace) > 0  # graded host values took the multiply path


# --------------------------------------------------------------------------- mutations must be caught
@pytest.fixture(scope="module")
def small():
    return scenario(5, (12, 16, 16), neurons=16, lanes=4, residual=True)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_wrong_cycle_cost_is_reported(small):
    program, x = small
    rep = cosim_core(program, 0, x, extra_dense_cycles=1)
    assert not rep.ok
    first = rep.mismatches[0]
    assert first["what"].startswith("i_done") and first["core"] == int(program.plan.core[0])
    assert "step 1" in rep.first_mismatch() and "i_done" in rep.first_mismatch()
    assert any(m["what"] == "busy cycles of the step" for m in rep.mismatches)


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize(("fault", "what"), [("", None), ("extra_cycle", "i_done"), ("word_offset", "membrane")])
def test_a_product_core_on_skewed_banks_matches_and_its_mutations_are_reported(fault, what):
    """A 5 x 3 attention block on a 4-lane core matches the simulator; one extra cycle per operand
    event is reported at ``i_done`` (and the busy count), a column update one word off in its banks
    at a membrane."""
    from spikeforge.rtl.scenarios import attention_network

    program = dense_program(attention_network(11, tokens=5, head_dim=3), 3, 3, neurons=16, lanes=4, axons=64)
    prod = next(p for p in program.pieces if p.kind == "product")
    assert (prod.geometry["i1"] - prod.geometry["i0"], prod.geometry["j1"] - prod.geometry["j0"]) == (5, 3)
    x = np.random.default_rng(5).integers(0, 16, 12)
    rep = cosim_core(program, prod.id, x, product_fault=fault)
    if what is None:
        assert rep.ok, rep.first_mismatch()
        assert rep.events > 20 and rep.spikes > 0 and rep.membranes == prod.n * rep.steps
    else:
        assert not rep.ok
        assert rep.mismatches[0]["what"].startswith(what), rep.first_mismatch()
        if fault == "extra_cycle":
            assert any(m["what"] == "busy cycles of the step" for m in rep.mismatches)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_weight_bit_is_reported_with_its_neuron(small):
    program, x = small
    init = piece_init(program, 0)
    syn = init.synapse.copy()
    word, lane = 2, 3  # row 0 (source 0: x[0] is sent), lane group 2: local neuron 2 * lanes + 3 = 11
    assert x[0] != 0
    syn[word, lane] ^= 1 << 2
    rep = cosim_core(program, 0, x, init=dataclasses.replace(init, synapse=syn))
    assert not rep.ok
    m = rep.mismatches[0]
    assert m["what"] == "membrane" and m["neuron"] == 11 and m["step"] == 1
    assert "neuron 11" in rep.first_mismatch() and "core 0" in rep.first_mismatch()


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_threshold_bit_is_reported(small):
    program, x = small
    init = piece_init(program, 1)
    params = init.params.copy()
    params[:, 0] ^= 1  # every threshold off by one
    rep = cosim_core(program, 1, x, init=dataclasses.replace(init, params=params))
    assert not rep.ok and {m["what"] for m in rep.mismatches} >= {"membrane"}


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_wrong_routing_entry_is_reported_as_a_packet_mismatch(small):
    program, x = small
    init = piece_init(program, 0)
    routing = init.routing.copy()
    routing[0, 4] ^= 1  # the first entry's destination slot
    rep = cosim_core(program, 0, x, init=dataclasses.replace(init, routing=routing))
    assert not rep.ok and rep.mismatches[0]["what"].startswith("output packet at cycle")
    assert rep.packets > 0


# --------------------------------------------------------------------------- export
@pytest.mark.rtl
def test_export_writes_the_array_init_files_and_manifest(tmp_path, small):
    program, _ = small
    manifest = export_rtl(program.hardware, tmp_path, program)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    sv = (tmp_path / manifest["file"]).read_text()
    assert "module core_array(" in sv and "always_ff" in sv and "always_comb" not in sv
    names = {p["name"] for p in manifest["ports"]}
    assert {"host__valid", "host__ready", "host__payload", "go", "step", "phase", "i_done", "f_done"} <= names
    # the array sequences its own phases: go in, step and phase out, no phase controls from outside
    dirs = {p["name"]: p["dir"] for p in manifest["ports"]}
    assert (dirs["go"], dirs["step"], dirs["phase"]) == ("input", "output", "output")
    assert not {"start", "fire", "pphase"} & names
    for port in manifest["ports"]:
        assert port["name"] in sv
    assert len(manifest["cores"]) == program.hardware.array.cores
    assert {c["piece"] for c in manifest["cores"]} == {-1} | {p.id for p in program.pieces}
    # init files hold the program's images: the weights of piece 0, lane 0 in the low bits
    core = next(c for c in manifest["cores"] if c["piece"] == 0)
    words = [int(w, 16) for w in (tmp_path / core["memories"]["synapse"]["file"]).read_text().split()]
    img = program.images(0)["synapse"].fields
    c = program.hardware.core
    assert len(words) == c.axons * c.neurons // c.lanes
    for r in range(len(img)):
        for lane in range(c.lanes):
            v = (words[r] >> (lane * c.weight_bits)) & ((1 << c.weight_bits) - 1)
            v -= (v >> (c.weight_bits - 1)) << c.weight_bits
            assert v == img[r, lane]
    if HAVE_ICARUS:  # the exported file elaborates
        import subprocess

        subprocess.run(["iverilog", "-g2012", "-o", os.devnull, str(tmp_path / manifest["file"])], check=True)


def test_export_of_a_product_piece_writes_its_membranes_in_bank_positions(tmp_path):
    """A 5 x 3 product block on 4 lanes: the membrane and parameter init files, read back through
    ``membrane_order``, are the program's ``v0``, thresholds and biases in local order; the file
    elaborates."""
    from spikeforge.rtl.piece import membrane_order
    from spikeforge.rtl.scenarios import attention_network

    program = dense_program(attention_network(11, tokens=5, head_dim=3), 3, 3, neurons=16, lanes=4, axons=64)
    prod = next(p for p in program.pieces if p.kind == "product")
    manifest = export_rtl(program.hardware, tmp_path, program)
    core = next(c for c in manifest["cores"] if c["piece"] == prod.id)
    c = program.hardware.core
    order = membrane_order(program.hardware, piece_init(program, prod.id))
    assert sorted(order[order >= 0].tolist()) == list(range(prod.n)) and order[: prod.n].tolist() != list(range(prod.n))

    def lanes_of(name, per_lane):
        words = [int(w, 16) for w in (tmp_path / core["memories"][name]["file"]).read_text().split()]
        out = []
        for w in words:
            for k in range(c.lanes * per_lane):
                v = (w >> (k * c.v_bits)) & ((1 << c.v_bits) - 1)
                out.append(v - ((v >> (c.v_bits - 1)) << c.v_bits))
        return np.asarray(out).reshape(-1, per_lane)

    params = program.images(prod.id)["params"].fields
    mem, par = lanes_of("membrane", 1)[:, 0], lanes_of("params", 2)
    at = order >= 0
    assert (mem[at] == params[order[at], 2]).all() and (par[at] == params[order[at], :2]).all()
    if HAVE_ICARUS:
        import subprocess

        subprocess.run(["iverilog", "-g2012", "-o", os.devnull, str(tmp_path / manifest["file"])], check=True)


# --------------------------------------------------------------------------- bad input
def test_a_core_the_generator_cannot_build_is_refused(tmp_path):
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(pipeline_cycles=0))
    with pytest.raises(RtlError, match=r"pipeline_cycles = 0 .* set it to >= 1"):
        export_rtl(hw, tmp_path)
    # a slot's base is a 16-bit register: a synapse SRAM of 2^17 words cannot be addressed
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(axons=8192, neurons=16, lanes=1))
    with pytest.raises(RtlError, match=r"synapse SRAM of 131072 words, more than the 2\^16 .* 16-bit base"):
        export_rtl(hw, tmp_path)


def test_a_program_for_another_hardware_file_is_refused(tmp_path, small):
    program, _ = small
    other = program.hardware.with_value("core.pipeline_cycles", 4)
    with pytest.raises(RtlError, match="compiled for another hardware"):
        export_rtl(other, tmp_path, program)


def test_a_piece_the_rtl_does_not_implement_is_named(tiny_graph):
    from spikeforge.mapping import compile

    program = compile(tiny_graph, HardwareConfig(array=ArrayConfig(16, 16)))  # 16-lane cores
    with pytest.raises(RtlError, match=r"is a 'mystery' piece; the RTL core implements neuron, output"):
        piece_init(dataclasses.replace(program, pieces=(dataclasses.replace(program.pieces[0], kind="mystery"),)), 0)


def test_the_slot_image_carries_row_words_and_the_rtl_takes_it_from_there(monkeypatch):
    """Section 3: ``row_words`` is the slot register's last field (16 bits). On 16-neuron, 4-lane
    cores a 40-neuron layer is cut 16 + 16 + 8: the last slice's dense rows keep the 4-word stride
    of the full slices, not ``ceil(8/4) = 2``; the packed image decodes to the program's
    ``row_words`` and the core's slot registers (``piece_init``) hold the decoded value."""
    from spikeforge.mapping.images import MemoryImage

    program = dense_program(dense_network(3, (12, 40, 40, 8)), 3, 3, neurons=16, lanes=4)
    hw = program.hardware
    narrow = 0
    for piece in program.pieces:
        img = program.images(piece.id)["slots"]
        assert img.widths[-1] == 16 and img.word_bits == 3 + 24 + 24 + 16 + hw.core.v_bits + 3 * 16 + 4 * 4 + 16
        back = MemoryImage.from_bytes("slots", img.to_bytes(), img.widths, (False,) * len(img.widths))
        init = piece_init(program, piece.id)
        for k, slot in enumerate(piece.slots):
            assert back.fields[k, -1] == slot.row_words == init.slots[k].row_words
            if slot.kind == "dense" and slot.row_words > -(-piece.n // hw.core.lanes):
                narrow += 1
    assert narrow == 2  # the last slices of h1 and h2
    images = type(program).images

    def altered(self, piece_id):  # a slot image whose stride differs from the program's pieces
        imgs = dict(images(self, piece_id))
        f = imgs["slots"].fields.copy()
        f[:, -1] += 1
        imgs["slots"] = MemoryImage("slots", f, imgs["slots"].widths)
        return imgs

    monkeypatch.setattr(type(program), "images", altered)
    assert piece_init(program, 5).slots[0].row_words == 5  # the register follows the image


def test_the_one_core_bench_refuses_partial_pieces_and_their_roots():
    """The one-core bench drives phases I and F only: without phase P a partial piece is never cleared
    and its root gets no sums, so ``cosim`` and ``cosim_core`` refuse both (before running anything)
    and point to the array bench; the other pieces of the program stay co-simulable alone."""
    program = dense_program(dense_network(4, (40, 16, 16), dif=True), 2, 3, axons=16, lanes=4)
    part = next(p for p in program.pieces if p.kind == "partial")
    x = np.zeros(40, np.int64)
    for pid, what in ((part.id, "a partial piece"), (part.root, "the root of partial pieces")):
        with pytest.raises(RtlError, match=rf"piece {pid} \(h1\) is {what}, .* \(cosim_array or cosim_samples\)\."):
            cosim_core(program, pid, x)
    with pytest.raises(RtlError, match=r"phase P\) the one-core bench does not replay"):
        cosim(program, x)
    from spikeforge.rtl.cosim import _refuse_phase_p

    out = next(p for p in program.pieces if p.kind == "output")
    _refuse_phase_p(program, out.id)  # the logits' core takes no partial sums: it may run alone


def test_an_icarus_test_without_iverilog_is_skipped_or_fails_under_require_peers(monkeypatch):
    """The ``icarus`` marker's guard (``tests/conftest.py``): nothing when iverilog is there or the
    test is not marked; without iverilog a skip, or a failure naming the variable in CI."""
    import conftest

    class Item:
        def __init__(self, marked):
            self.marked = marked

        def get_closest_marker(self, name):
            return object() if self.marked and name == "icarus" else None

    def outcome(marked):  # caught here: a skip escaping the test would pass as a skip, not fail
        try:
            conftest.pytest_runtest_setup(Item(marked))
        except (pytest.skip.Exception, pytest.fail.Exception) as e:
            return type(e).__name__, str(e)
        return None

    monkeypatch.setattr(conftest, "HAVE_ICARUS", True)
    assert outcome(True) is None
    monkeypatch.setattr(conftest, "HAVE_ICARUS", False)
    assert outcome(False) is None
    monkeypatch.delenv("SPIKEFORGE_REQUIRE_PEERS", raising=False)
    assert outcome(True) == ("Skipped", "iverilog missing (scripts/test.sh installs it)")
    monkeypatch.setenv("SPIKEFORGE_REQUIRE_PEERS", "1")
    assert outcome(True) == (
        "Failed",
        "iverilog is missing but SPIKEFORGE_REQUIRE_PEERS is set (scripts/test.sh installs it).",
    )


def test_a_bench_imports_neither_amaranth_nor_the_simulator():
    """Every co-simulation starts a Python inside Icarus that imports its bench: ``spikeforge.rtl``
    resolves its names on first use, so the bench loads cocotb only (eagerly, Amaranth, numba and
    the simulator cost about 2 s of CPU per co-simulation); the package's names still all resolve,
    and its ``cosim`` is the function even where the submodule ``cosim`` was imported first."""
    import subprocess
    import sys

    import spikeforge.rtl as rtl

    code = (
        "import sys, spikeforge.rtl.bench_core, spikeforge.rtl.bench_array, spikeforge.rtl.bench_rounds\n"
        "heavy = ('amaranth', 'numba', 'spikeforge.sim', 'spikeforge.rtl.cosim')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "import spikeforge.rtl.cosim; from spikeforge.rtl import cosim; print(callable(cosim), cosim.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True cosim"]
    assert all(getattr(rtl, name) is not None for name in rtl.__all__) and rtl.cosim is cosim
    with pytest.raises(AttributeError, match="has no attribute 'cosim_cores'"):
        rtl.cosim_cores  # noqa: B018


def test_a_missing_icarus_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError, match="apt-get install iverilog"):
        require_icarus()


@pytest.mark.parametrize("lanes", [4, 16])
def test_every_piece_of_the_bundled_model_builds_on_multi_lane_cores(tiny_graph, lanes):
    """The skewed membrane banks (section 4.3) lifted the one-lane limit of product pieces: the
    bundled model's 8 products and every other piece build on 4- and 16-lane cores."""
    from spikeforge.mapping import compile

    program = compile(tiny_graph, HardwareConfig(array=ArrayConfig(16, 16), core=CoreConfig(lanes=lanes)))
    inits = [piece_init(program, p.id) for p in program.pieces]
    assert sum(p.kind == "product" for p in program.pieces) == 8 and len(inits) == len(program.pieces)
