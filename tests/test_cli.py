"""End-to-end CLI: the demo writes the report users script against; errors are one sentence."""

from __future__ import annotations

import json
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
