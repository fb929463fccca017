"""End-to-end CLI: the demo writes the report users script against; errors are one sentence."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from spikeforge.cli import main
from spikeforge.models import load_graph


def test_demo_writes_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--samples", "40", "--quiet"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"] == "tiny-digits" and report["timesteps"] == 4 and report["samples"] == 40
    acc = report["accuracy"]
    assert set(acc) >= {"ann_quantized", "snn", "float_qat"}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert acc["snn"] == acc["ann_quantized"]  # DIF conversion is exact
    assert report["exactness"]["exact"] is True
    assert "SNN == integer ANN: yes" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_console_script_full_test_set(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spikeforge.cli", "demo", "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["samples"] == 359 and report["accuracy"]["ann_quantized"] >= 0.95
    assert report["accuracy"]["snn"] == report["accuracy"]["ann_quantized"]


def test_convert_writes_a_loadable_graph(tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["convert", "--model", "tiny-digits", "--out", str(out), "--timesteps", "6"]) == 0
    assert load_graph(out).timesteps == 6
    assert "wrote" in capsys.readouterr().out


def test_errors_are_one_sentence(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikeforge demo: error: no bundled model or file") and "Traceback" not in err
    assert main(["demo", "--samples", "5000", "--quiet"]) == 2
    assert "samples must be in 1..359" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_text("not a zip")
    assert main(["convert", "--model", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "g.npz")]) == 2
    assert "not an .npz archive" in capsys.readouterr().err


def test_timesteps_below_one_rejected_by_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--timesteps", "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_demo_report_has_the_simulation_keys(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--samples", "3", "--quiet"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("synaptic_ops_per_inference", "cycles_per_inference", "latency_s", "memory_traffic_bytes", "energy_pj"):
        assert report[key] == report["simulation"][key]
    assert report["simulation"]["exactness"]["exact"] is True
    assert report["simulation"]["spikes_per_inference"] == report["spikes_per_inference"]
    assert report["simulation"]["accuracy"] == report["accuracy"]


def test_simulate_writes_result_and_prints_a_summary(tmp_path, capsys):
    argv = ["simulate", "--hardware", "configs/array-4x4.toml", "--samples", "2", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for label in (
        "accuracy",
        "spikes",
        "cycles",
        "latency",
        "SRAM traffic",
        "DRAM traffic",
        "energy (horowitz45)",
        "energy (paper conv.)",
    ):
        assert label in out
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["samples"] == 2 and result["mode"] == "swap" and result["exactness"]["exact"] is True
    assert result["accuracy"]["float_qat"] is not None


def test_simulate_a_saved_program(tmp_path, capsys):
    assert main(["map", "--hardware", "configs/array-16x16.toml", "--out", str(tmp_path / "prog")]) == 0
    argv = [
        "simulate",
        "--model",
        str(tmp_path / "prog"),
        "--hardware",
        "configs/array-16x16.toml",
        "--samples",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "mode resident" in capsys.readouterr().out


def test_simulate_bad_input_is_one_sentence(tmp_path, capsys):
    assert main(["map", "--hardware", "configs/array-16x16.toml", "--out", str(tmp_path / "prog")]) == 0
    capsys.readouterr()
    other = ["--hardware", "configs/array-4x4.toml", "--quiet"]
    assert main(["simulate", "--model", str(tmp_path / "prog"), *other]) == 2
    assert "was compiled for another hardware description" in capsys.readouterr().err
    assert main(["simulate", "--samples", "360", *other]) == 2
    assert "samples must be in 1..359" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["simulate", "--out", str(blocker / "sub"), *other]) == 2
    assert "cannot write results to" in capsys.readouterr().err
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "big.npz",
        x_train=rng.integers(0, 16, (4, 1, 9, 9)),
        y_train=np.arange(4) % 3,
        x_test=rng.integers(0, 16, (4, 1, 9, 9)),
        y_test=np.arange(4) % 3,
    )
    assert main(["simulate", "--data", str(tmp_path / "big.npz"), *other]) == 2
    err = capsys.readouterr().err
    assert "the data's images are (1, 9, 9) but model 'tiny-digits' expects (1, 8, 8)" in err
    assert main(["simulate", "--profile", "nonesuch", *other]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_reference_page_is_current():
    from pathlib import Path

    from spikeforge.cli import reference_markdown

    page = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    assert page.read_text() == reference_markdown(), "run: python scripts/gen_cli_reference.py"


@pytest.mark.rtl
def test_rtl_writes_modules_and_refuses_a_program_for_other_hardware(tmp_path, capsys):
    assert main(["rtl", "--hardware", "configs/array-1x1.toml", "--out", str(tmp_path / "rtl")]) == 0
    assert "no --program: every core is idle" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert [m["module"] for m in manifest["modules"]] == ["core"]
    assert "module core" in (tmp_path / "rtl" / "core.sv").read_text()
    assert main(["map", "--hardware", "configs/array-4x4.toml", "--out", str(tmp_path / "prog")]) == 0
    capsys.readouterr()
    args = ["rtl", "--hardware", "configs/array-16x16.toml", "--program", str(tmp_path / "prog"), "--out", "x"]
    assert main(args) == 2
    assert "compiled for another hardware" in capsys.readouterr().err


def test_cosim_names_what_the_rtl_cannot_build_yet(tmp_path, capsys):
    # the MBE MLP on one core runs in rounds mode (every piece in turn at every step, its state streamed
    # from DRAM); the RTL's DMA engine moves at most 16 DRAM words per cycle, so a channel of 4096 bytes
    # per cycle without latency is too short for a round's words, its 16 registers among them (docs/rtl.md)
    hw = tmp_path / "mbe-1x1.toml"
    hw.write_text(
        '[array]\nrows = 1\ncols = 1\n[core]\nneuron_models = ["if", "dif", "mbe"]\n'
        "[memory]\ndram_latency_cycles = 0\ndram_bytes_per_cycle = 4096\n"
    )
    assert main(["cosim", "--model", "tiny-digits-mlp", "--hardware", str(hw)]) == 2
    err = capsys.readouterr().err
    assert "('gelu0') reads 137 DRAM words in a transfer of 2 cycles, but the DMA engine moves at most 16" in err


def test_demo_runs_the_vit_through_the_mbe_path(tmp_path, capsys):
    argv = ["demo", "--model", "tiny-digits-vit", "--samples", "10", "--timesteps", "8", "--out", str(tmp_path)]
    assert main([*argv, "--quiet"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["neuron"] == "mbe" and report["timesteps"] == 8 and report["samples"] == 10
    assert set(report["accuracy"]) == {"ann_float", "snn"} and report["mbe"]["v_bits"] == 32
    # the integer graph on the hardware: every simulated logit vector equals the executor's
    assert report["exactness"]["exact"] and report["exactness"]["logits_equal_samples"] == 10
    assert report["simulation"]["mode"] == "rounds" and report["cycles_per_inference"] > 0
    assert report["spikes_per_inference"] > 0
    assert "MBE SNN" in capsys.readouterr().out
    assert main(["demo", "--model", "tiny-digits-vit", "--neuron", "if", "--samples", "3"]) == 2
    assert "converts with MBE neurons" in capsys.readouterr().err


@pytest.mark.rtl
def test_cosim_of_a_dense_network_on_the_digits_matches(tmp_path, capsys):
    import os
    import shutil

    if shutil.which("iverilog") is None and not os.environ.get("SPIKEFORGE_REQUIRE_PEERS"):
        pytest.skip("iverilog missing (scripts/test.sh installs it)")
    from spikeforge.models import save_graph
    from spikeforge.models.graph import InputPopulation, SNNGraph
    from spikeforge.rtl.scenarios import dense_network

    g = dense_network(3, (64, 16, 16))  # 64 inputs: the 8 x 8 digits, values up to 16 (5 bits)
    g = SNNGraph((InputPopulation("in", (1, 8, 8), value_bits=5), *g.populations[1:]), g.projections, g.timesteps)
    save_graph(g, tmp_path / "dense.npz")
    (tmp_path / "hw.toml").write_text(
        "[array]\nrows = 2\ncols = 3\n[core]\nneurons = 16\naxons = 64\nlanes = 4\n"
        "spike_history_steps = 8\nrouting_entries = 64\n"
    )
    args = ["cosim", "--model", str(tmp_path / "dense.npz"), "--hardware", str(tmp_path / "hw.toml")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sample 0: array of 6 cores" in out and "all samples match" in out


@pytest.mark.rtl
def test_rtl_shows_its_stages_on_a_progress_line_unless_quiet(tmp_path, capsys, monkeypatch):
    """``spikeforge rtl`` reports each long stage (Amaranth, Yosys, per module) on stderr: one line per
    stage in a log, one progress line on a terminal; ``--quiet`` keeps stderr empty; the library
    reports them to any callback."""
    from spikeforge.mapping import load_hardware
    from spikeforge.rtl import export_rtl
    from spikeforge.rtl.progress import reporting

    args = ["rtl", "--hardware", "configs/array-1x1.toml"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    # stderr is not a terminal here (a log): one line per stage, with the time it started
    lines = capsys.readouterr().err.splitlines()
    assert [ln[8:].split(" (")[0] for ln in lines] == [
        "Amaranth: elaborating core_array to RTLIL",
        "Yosys: core_array to SystemVerilog",
        "Amaranth: elaborating core to RTLIL",
        "Yosys: core to SystemVerilog",
        "done",
    ]
    assert all(re.fullmatch(r"\[\d\d:\d\d\] .+", ln) for ln in lines)
    # on a terminal: one line, rewritten in place
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*args, "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert "\r" in err and "Yosys: core_array to SystemVerilog" in err and err.count("\n") <= 1
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    seen = []
    with reporting(seen.append):
        export_rtl(load_hardware("configs/array-1x1.toml"), tmp_path / "c")
    assert [s.split(" (")[0] for s in seen] == [
        "Amaranth: elaborating core_array to RTLIL",
        "Yosys: core_array to SystemVerilog",
        "Amaranth: elaborating core to RTLIL",
        "Yosys: core to SystemVerilog",
    ]
